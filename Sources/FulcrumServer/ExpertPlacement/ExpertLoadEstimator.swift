import DequeModule
import FulcrumCore
import FulcrumStore
import Foundation
import Synchronization

/// The expert-parallel balancer's input: tokens per logical expert and layer over a sliding window, per unit,
/// folded in memory from the workers' slot counts as they arrive (each with the placement the worker ran).
///
/// The one place slot counts are read: each report goes into the sliding window (by logical expert) and into the
/// open window of its unit and placement version (by physical slot), which the telemetry writer stores once it has
/// run `windowLength`. At start-up the stored windows are folded back in (`restore`), so a restarted Fulcrum does not
/// balance blind for a whole window.
public final class ExpertLoadEstimator: Sendable {
    /// Counts are kept in buckets of this length; the window slides bucket by bucket.
    let bucketLength: Duration
    /// The longest window anyone may ask for; older buckets are dropped.
    let retention: Duration
    /// Length of one stored window per unit and placement version.
    let windowLength: Duration

    private struct Bucket {
        var start: ContinuousClock.Instant
        var load: [[Double]]
        var reports: Int
    }

    /// Windows are summed per unit and placement version: during a rollout ranks report under two versions at
    /// once, and slot i holds a different expert in each.
    private struct WindowKey: Hashable {
        var unit: String
        var version: Int
    }

    private struct WindowSum {
        var unit: DeploymentUnit
        var start: Date
        var end: Date
        var reports = 0
        var slotTokens: [[Int]]
    }

    private struct State {
        var buckets: [String: Deque<Bucket>] = [:]
        var open: [WindowKey: WindowSum] = [:]
        var closed: [ExpertLoadWindow] = []
    }

    private let state = Mutex(State())
    private let clock: any ServiceClock

    public init(
        bucketLength: Duration = .seconds(10), retention: Duration = .seconds(3_600), windowLength: Duration = .seconds(10),
        clock: any ServiceClock = RealClock()
    ) {
        self.clock = clock
        self.bucketLength = bucketLength
        self.retention = retention
        self.windowLength = windowLength
    }

    /// Adds one report's slot counts, run under placement `version` (`placement` is its table, when still known:
    /// without it the counts are stored but cannot be attributed to experts). Counts of the wrong shape are ignored.
    public func add(_ experts: ExpertWindow, rank: Int, unit: DeploymentUnit, version: Int, placement: Placement?) {
        let offset = rank * unit.slotsPerGpu
        guard experts.slotTokens.count == unit.model.moeLayers, offset >= 0, offset + unit.slotsPerGpu <= unit.slots,
            experts.slotTokens.allSatisfy({ $0.count == unit.slotsPerGpu })
        else { return }
        let table = placement.flatMap { $0.phy2log.count == unit.model.moeLayers && $0.phy2log.allSatisfy { $0.count == unit.slots } ? $0.phy2log : nil }
        let now = clock.now
        let key = WindowKey(unit: unit.id, version: version)
        state.withLock { state in
            if let open = state.open[key],
                open.unit != unit || experts.windowEnd.timeIntervalSince(open.start) > windowLength.seconds
            {
                Self.close(key, in: &state)
            }
            if table != nil { self.openBucket(unit: unit, at: now, in: &state.buckets[unit.id, default: []]) }
            // In place: copying a bucket or a window out would copy a layers x experts (or slots) table per report.
            Self.accumulate(
                experts, offset: offset, table: table, routedExperts: unit.model.routedExperts,
                bucket: &state.buckets[unit.id, default: []],
                window: &state.open[
                    key,
                    default: WindowSum(
                        unit: unit, start: experts.windowStart, end: experts.windowEnd,
                        slotTokens: Array(repeating: Array(repeating: 0, count: unit.slots), count: unit.model.moeLayers))
                ])
        }
    }

    /// One pass over the counts: into the open window by slot and, with the table, into the newest bucket by expert.
    private static func accumulate(
        _ experts: ExpertWindow, offset: Int, table: [[Int]]?, routedExperts: Int, bucket buckets: inout Deque<Bucket>,
        window: inout WindowSum
    ) {
        let last = buckets.count - 1
        for (layer, row) in experts.slotTokens.enumerated() {
            for (slot, tokens) in row.enumerated() {
                window.slotTokens[layer][offset + slot] &+= tokens
                if let table, last >= 0 {
                    let expert = table[layer][offset + slot]
                    if expert >= 0, expert < routedExperts { buckets[last].load[layer][expert] += Double(tokens) }
                }
            }
        }
        if table != nil, last >= 0 { buckets[last].reports += 1 }
        window.start = min(window.start, experts.windowStart)
        window.end = max(window.end, experts.windowEnd)
        window.reports += 1
    }

    /// Starts a bucket at `start` unless the newest began less than a bucket's length before it.
    private func openBucket(unit: DeploymentUnit, at start: ContinuousClock.Instant, in buckets: inout Deque<Bucket>) {
        if buckets.last.map({ start - $0.start >= bucketLength }) ?? true {
            buckets.append(
                Bucket(
                    start: start,
                    load: Array(repeating: Array(repeating: 0, count: unit.model.routedExperts), count: unit.model.moeLayers),
                    reports: 0))
        }
        while let first = buckets.first, start - first.start > retention { buckets.removeFirst() }
    }

    private static func close(_ key: WindowKey, in state: inout State) {
        guard let sum = state.open.removeValue(forKey: key) else { return }
        state.closed.append(
            ExpertLoadWindow(
                unit: key.unit, windowStart: sum.start, windowEnd: sum.end, placementVersion: key.version,
                reports: sum.reports, slotTokens: sum.slotTokens))
    }

    /// Closes the open windows that ended more than `age` ago (every one with `.zero`) and hands over every closed
    /// window, oldest first: the telemetry writer's input.
    public func closedWindows(olderThan age: Duration) -> [ExpertLoadWindow] {
        let cutoff = Date().addingTimeInterval(-age.seconds)
        return state.withLock { state in
            for key in state.open.keys where age == .zero || state.open[key].map({ $0.end <= cutoff }) == true {
                Self.close(key, in: &state)
            }
            defer { state.closed.removeAll() }
            return state.closed
        }
    }

    /// Folds stored windows back in at start-up and on taking the lease over, each into a bucket of its age; `placements` are the unit's tables
    /// by version (a window of a version without one is skipped). Windows older than the retention are skipped.
    public func restore(_ windows: [ExpertLoadWindow], unit: DeploymentUnit, placements: [Int: Placement], now: Date = Date()) {
        let instant = clock.now
        let ordered = windows.filter { $0.unit == unit.id }.sorted { $0.windowEnd < $1.windowEnd }
        state.withLock { state in
            var buckets = Deque<Bucket>()
            for window in ordered {
                let age = max(0, now.timeIntervalSince(window.windowEnd))
                guard age <= retention.seconds, let table = placements[window.placementVersion]?.phy2log,
                    table.count == unit.model.moeLayers, table.allSatisfy({ $0.count == unit.slots }),
                    window.slotTokens.count == unit.model.moeLayers, window.slotTokens.allSatisfy({ $0.count == unit.slots })
                else { continue }
                openBucket(unit: unit, at: instant - .seconds(age), in: &buckets)
                let last = buckets.count - 1
                for (layer, row) in window.slotTokens.enumerated() {
                    for (slot, tokens) in row.enumerated() {
                        let expert = table[layer][slot]
                        if expert >= 0, expert < unit.model.routedExperts { buckets[last].load[layer][expert] += Double(tokens) }
                    }
                }
                buckets[last].reports += window.reports
            }
            // What was stored replaces what this process counted: nothing at start-up (reports wait for the load),
            // and on taking the lease over, what it counted as a standby or as an earlier leader is stored already.
            state.buckets[unit.id] = buckets
        }
    }

    public struct Estimate: Sendable {
        public var weight: [[Double]]
        public var reports: Int
        public var buckets: Int
        /// How far back the oldest counted bucket starts.
        public var spans: Duration
    }

    /// The summed load of the buckets that started within `window`; nil when there are none.
    public func estimate(unit id: String, window: Duration) -> Estimate? {
        let now = clock.now
        return state.withLock { units -> Estimate? in
            guard let buckets = units.buckets[id] else { return nil }
            let recent = buckets.filter { now - $0.start <= window }
            guard let first = recent.first else { return nil }
            var weight = first.load
            for bucket in recent.dropFirst() {
                for layer in weight.indices {
                    for expert in weight[layer].indices { weight[layer][expert] += bucket.load[layer][expert] }
                }
            }
            return Estimate(
                weight: weight, reports: recent.reduce(0) { $0 + $1.reports }, buckets: recent.count,
                spans: now - first.start)
        }
    }

    public func forget(unit id: String) {
        state.withLock { state in
            state.buckets[id] = nil
            state.open = state.open.filter { $0.key.unit != id }
        }
    }
}
