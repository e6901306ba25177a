import FulcrumCore
import Foundation

/// Small units and registrations that the store tests build on.
enum Fixtures {
    static let t0 = Date(timeIntervalSince1970: 1_740_000_000)

    static func unit(_ id: String = "prefill-a", nodes: Int = 2, gpusPerNode: Int = 4) -> DeploymentUnit {
        // 16 routed + 8 redundant = 24 slots over 8 GPUs: 3 slots per GPU.
        DeploymentUnit(
            id: id, role: .prefill, nodes: nodes, gpusPerNode: gpusPerNode,
            model: ModelShape(moeLayers: 3, routedExperts: 16, expertGroups: 4), redundantExperts: 8, createdAt: t0)
    }

    static func registration(_ id: String, unit: String = "prefill-a", node: Int = 0, gpu: Int = 0)
        -> WorkerRegistration
    {
        WorkerRegistration(
            id: id, unit: unit, node: node, gpu: gpu, capacity: WorkerCapacity(kvTokens: 500_000, maxBatchTokens: 16_384))
    }
}

extension Date {
    /// PostgreSQL keeps microseconds; compare stored times at that precision.
    func isClose(to other: Date?) -> Bool {
        guard let other else { return false }
        return abs(timeIntervalSince(other)) < 0.000_01
    }
}
