import FulcrumCore
import Foundation

/// Every published placement version of every unit, and the newest version each worker acknowledged.
public protocol PlacementStore: Sendable {
    /// Stores a published placement; throws `PlacementStoreError.versionExists` when that version is taken and
    /// `RegistryError.unitNotFound` for an unknown unit. A placement's audit entry, when it has one, is written in
    /// the same transaction.
    func savePlacement(_ placement: Placement, details: PlacementDetails) async throws
    /// The newest placement of every unit that has one.
    func latestPlacements() async throws -> [Placement]
    /// A unit's stored placements below version `before` (all when nil), newest first, at most `limit`.
    func placementHistory(unit: String, before: Int?, limit: Int) async throws -> [PlacementSummary]
    /// One stored placement version with its table; nil when that version was never stored.
    func placement(unit: String, version: Int) async throws -> PlacementRecord?
    /// The newest acknowledged version of every worker (acknowledgements arrive in `TelemetryBatch`es).
    func latestAcks() async throws -> [PlacementAck]
}
