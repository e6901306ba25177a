import FulcrumCore
import Foundation
import Synchronization

/// The dev-mode store: everything in memory, lost when the process ends. Its concerns' conformances live beside
/// their protocols.
public final class MemoryStore: StoreHealth {
    struct State {
        var units: [String: DeploymentUnit] = [:]
        var workers: [String: Worker] = [:]
        var history: [String: [WorkerStateChange]] = [:]
        var placements: [String: [PlacementRecord]] = [:]
        /// The ledger: the newest record of each request id, per phase.
        var ledger: [String: [Role: AssignmentRecord]] = [:]
        var acks: [String: PlacementAck] = [:]
        var samples: [TelemetrySample] = []
        var windows: [ExpertLoadWindow] = []
        var controls: [String: UnitControls] = [:]
        var audit: [AuditEntry] = []
        var lease = Lease(epoch: 0, holder: "", holderURL: "", expiresAt: .distantPast, expired: true)
        var replicas: [String: ReplicaRecord] = [:]

        mutating func append(_ entry: AuditEntry) {
            var entry = entry
            entry.id = (audit.last?.id ?? 0) + 1
            audit.append(entry)
        }

        func slotHolder(unit: String, node: Int, gpu: Int, except id: String) -> String? {
            workers.values.first {
                $0.unit == unit && $0.node == node && $0.gpu == gpu && $0.state.isLive && $0.id != id
            }?.id
        }

        mutating func record(_ change: WorkerStateChange?) {
            if let change { history[change.worker, default: []].append(change) }
        }
    }

    let state = Mutex(State())

    public init() {}

    public func readiness() async -> Readiness { .ready }
}
