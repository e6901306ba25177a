import Synchronization

/// The placement versions the simulated workers received and applied, per unit: which version each rank runs,
/// and for each version how many ranks applied it and how many expert slots changed on them.
final class PlacementLedger: Sendable {
    typealias Version = SimulationReport.PlacementVersion

    private struct UnitState {
        var running: [Int: Int] = [:]
        var versions: [Int: Version] = [:]
    }

    private let state = Mutex([String: UnitState]())

    func applied(unit: String, rank: Int, version: Int, moved: Int, excluded: [Int], at elapsed: Double) {
        state.withLock { units in
            units[unit, default: UnitState()].running[rank] = version
            var entry =
                units[unit]?.versions[version]
                ?? Version(
                    version: version, firstReceived: elapsed, spreadSeconds: 0, appliedBy: 0, movedSlots: 0,
                    excludedRanks: excluded)
            entry.appliedBy += 1
            entry.movedSlots += moved
            entry.spreadSeconds = max(entry.spreadSeconds, elapsed - entry.firstReceived)
            units[unit]?.versions[version] = entry
        }
    }

    /// The version each rank of the unit runs.
    func running(unit: String) -> [Int: Int] { state.withLock { $0[unit]?.running ?? [:] } }

    /// Every unit's versions after the first, oldest first.
    func versions() -> [String: [Version]] {
        state.withLock { units in
            units.mapValues { $0.versions.values.filter { $0.version > 1 }.sorted { $0.version < $1.version } }
        }
    }
}
