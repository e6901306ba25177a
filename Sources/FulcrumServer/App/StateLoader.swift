import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// Fills the in-memory views (fleet, placement hub, expert-load windows, unit controls, the assignments of the last
/// moments) from the store at start-up and when a standby takes over. Everything is read before anything is applied: start-up retries after a database failure, and a
/// half-applied load would count restored windows twice.
struct StateLoader: Sendable {
    let stores: Stores
    let fleet: Fleet
    let hub: PlacementHub
    let estimator: ExpertLoadEstimator
    let controls: UnitControlsBook
    let assignments: AssignmentService
    let clock: any ServiceClock
    let logger: Logger

    /// How far back the ledger's assignments are remembered on loading: a gateway retries within seconds, and a
    /// leader taking over reads them while nobody is answered.
    static let recentAssignments: (seconds: Double, limit: Int) = (30, 500_000)

    func load() async throws {
        let unitControls = try await stores.operations.allUnitControls()
        let units = try await stores.registry.units()
        let workers = try await stores.registry.workers(unit: nil, state: nil)
        let acks = try await stores.placements.latestAcks()
        let placementsNow = try await stores.placements.latestPlacements()
        let recent = try await stores.ledger.recentAssignments(
            since: clock.date.addingTimeInterval(-Self.recentAssignments.seconds), limit: Self.recentAssignments.limit)
        // The stored expert-load windows of the last retention, with the tables they were counted under.
        var restoring: [(unit: DeploymentUnit, windows: [ExpertLoadWindow], placements: [Int: Placement])] = []
        let since = clock.date.addingTimeInterval(-estimator.retention.seconds)
        for unit in units {
            let windows = try await stores.history.expertLoadWindows(unit: unit.id, since: since)
            guard !windows.isEmpty else { continue }
            var placements: [Int: Placement] = [:]
            for version in Set(windows.map(\.placementVersion)) {
                if version == 1 {
                    placements[1] = Placement.initial(for: unit, at: unit.createdAt)
                } else if let record = try await stores.placements.placement(unit: unit.id, version: version) {
                    placements[version] = record.placement
                }
            }
            restoring.append((unit, windows, placements))
        }
        fleet.load(units: units, workers: workers, acks: acks)
        hub.load(placementsNow)
        for (unit, windows, placements) in restoring {
            estimator.restore(windows, unit: unit, placements: placements, now: clock.date)
        }
        controls.load(unitControls)
        assignments.restore(recent)
        let restored = restoring.reduce(0) { $0 + $1.windows.count }
        logger.info(
            "registry loaded; every worker is of unknown age until it reports",
            metadata: [
                "units": "\(units.count)", "workers": "\(workers.count)", "expert_load_windows": "\(restored)",
                "recent_assignments": "\(recent.count)",
            ])
    }
}
