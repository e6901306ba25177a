import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: PlacementStore {
    public func savePlacement(_ placement: Placement, details: PlacementDetails) async throws {
        try state.withLock { (state: inout State) throws in
            guard state.units[placement.unit] != nil else { throw RegistryError.unitNotFound(placement.unit) }
            if state.placements[placement.unit, default: []].contains(where: { $0.placement.version == placement.version }) {
                throw PlacementStoreError.versionExists(unit: placement.unit, version: placement.version)
            }
            var stored = details
            stored.audit = nil
            state.placements[placement.unit, default: []].append(PlacementRecord(placement: placement, details: stored))
            if let audit = details.audit { state.append(audit) }
        }
    }

    public func latestPlacements() async throws -> [Placement] {
        state.withLock { state in
            state.placements.values.compactMap { $0.max { $0.placement.version < $1.placement.version }?.placement }
                .sorted { $0.unit < $1.unit }
        }
    }

    public func placementHistory(unit: String, before: Int?, limit: Int) async throws -> [PlacementSummary] {
        state.withLock { state in
            let records = state.placements[unit, default: []].filter { record in
                before.map { record.placement.version < $0 } ?? true
            }
            return records.sorted { $0.placement.version > $1.placement.version }.prefix(max(0, limit)).map(\.summary)
        }
    }

    public func placement(unit: String, version: Int) async throws -> PlacementRecord? {
        state.withLock { $0.placements[unit]?.first { $0.placement.version == version } }
    }

    public func latestAcks() async throws -> [PlacementAck] {
        state.withLock { $0.acks.values.sorted { ($0.unit, $0.worker) < ($1.unit, $1.worker) } }
    }
}
