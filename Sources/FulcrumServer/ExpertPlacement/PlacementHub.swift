import FulcrumCore
import Foundation
import ServiceLifecycle
import Synchronization

/// The current placement of every unit and the workers' parked long polls. Publishing a version wakes every poll of
/// that unit at once; nothing here touches the database.
public final class PlacementHub: Sendable {
    private struct Waiter {
        var unit: String
        var continuation: CheckedContinuation<Placement?, Never>
    }

    private struct State {
        var current: [String: Placement] = [:]
        /// The last few versions of every unit, newest last: workers still running one count under its table.
        var recent: [String: [Placement]] = [:]
        /// How each recent version was reached from the one before it, by unit and version, with each rank's part
        /// (every parked poll of a unit wakes at once and asks for its own).
        var plans: [String: [Int: (plan: MigrationPlan, byRank: [Int: [MigrationPlan.Transfer]])]] = [:]
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Installs the newest stored placements at start-up.
    public func load(_ placements: [Placement]) {
        state.withLock { state in
            for placement in placements where placement.version > state.current[placement.unit]?.version ?? 0 {
                state.current[placement.unit] = placement
                Self.remember(placement, in: &state)
            }
        }
    }

    /// The unit's current placement: the newest published, or the initial one (version 1) before any.
    public func current(for unit: DeploymentUnit) -> Placement {
        state.withLock { $0.current[unit.id] } ?? Placement.initial(for: unit, at: unit.createdAt)
    }

    /// Makes `placement` current and hands it to every parked poll of its unit; `plan` is how the GPUs get there from
    /// the version before.
    public func publish(_ placement: Placement, plan: MigrationPlan? = nil) {
        let byRank = plan?.byRank ?? [:]
        let woken = state.withLock { state -> [CheckedContinuation<Placement?, Never>] in
            state.current[placement.unit] = placement
            Self.remember(placement, in: &state)
            if let plan {
                var plans = state.plans[placement.unit, default: [:]]
                plans[placement.version] = (plan, byRank)
                state.plans[placement.unit] = plans.filter { $0.key > placement.version - Self.recentVersions }
            }
            let ids = state.waiters.filter { $0.value.unit == placement.unit }.map(\.key)
            return ids.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }
        }
        for continuation in woken { continuation.resume(returning: placement) }
    }

    public func forget(unit id: String) {
        state.withLock { state in
            state.current[id] = nil
            state.recent[id] = nil
            state.plans[id] = nil
        }
    }

    static let recentVersions = 8

    private static func remember(_ placement: Placement, in state: inout State) {
        var list = state.recent[placement.unit, default: []].filter { $0.version != placement.version }
        list.append(placement)
        state.recent[placement.unit] = Array(list.suffix(recentVersions))
    }

    /// The placement `version` of a unit if it is recent (or the initial one), nil for an unknown or old one.
    public func placement(_ version: Int, for unit: DeploymentUnit) -> Placement? {
        if let found = state.withLock({ $0.recent[unit.id]?.first { $0.version == version } }) { return found }
        return version == 1 ? Placement.initial(for: unit, at: unit.createdAt) : nil
    }

    /// The migration plan of a recent version published by this process; nil for others (the store has the tables).
    public func plan(_ version: Int, for unit: String) -> MigrationPlan? {
        state.withLock { $0.plans[unit]?[version]?.plan }
    }

    /// One rank's part of a recent version's plan: nil when the plan is not known here, empty when the rank has none.
    public func transfers(_ version: Int, for unit: String, rank: Int) -> (transfers: [MigrationPlan.Transfer], rounds: Int)? {
        state.withLock { state in
            state.plans[unit]?[version].map { ($0.byRank[rank] ?? [], $0.plan.rounds.count) }
        }
    }

    /// Workers' polls waiting for a new version, by unit.
    public func parkedPolls() -> [String: Int] {
        state.withLock { state in state.waiters.values.reduce(into: [:]) { $0[$1.unit, default: 0] += 1 } }
    }

    /// Returns the unit's placement as soon as its version differs from `known` (the worker's ETag): at once if it
    /// already does, else when one is published, or nil when `timeout` passes, the caller is cancelled or the
    /// server shuts down. Equality, not order: a re-created unit starts again at version 1.
    public func next(after known: Int, for unit: DeploymentUnit, timeout: Duration) async -> Placement? {
        let now = current(for: unit)
        if now.version != known { return now }
        guard timeout > .zero else { return nil }
        return await withTaskGroup(of: Placement?.self) { group in
            group.addTask { await self.park(after: known, for: unit) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func park(after known: Int, for unit: DeploymentUnit) async -> Placement? {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        // A poll parked when shutdown begins answers at once, so in-flight long polls do not hold shutdown up.
        return await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Placement?, Never>) in
                    let ready = state.withLock { state -> Placement?? in
                        if let current = state.current[unit.id], current.version != known { return .some(current) }
                        if Task.isCancelled || Task.isShuttingDownGracefully { return .some(nil) }
                        state.waiters[id] = Waiter(unit: unit.id, continuation: continuation)
                        return .none
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            } onCancel: {
                self.release(id)
            }
        } onGracefulShutdown: {
            self.release(id)
        }
    }

    /// Answers every parked poll now (as unchanged): this replica stopped leading, and the workers should ask the
    /// leader.
    public func releaseAllPolls() {
        let waiting = state.withLock { state in
            defer { state.waiters.removeAll() }
            return state.waiters.values.map(\.continuation)
        }
        for continuation in waiting { continuation.resume(returning: nil) }
    }

    private func release(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: nil)
    }
}
