import DequeModule
import FulcrumCore
import Foundation
import Synchronization

/// The expert-parallel balancer's input: tokens per logical expert and layer over a sliding window, per unit,
/// folded in memory from the workers' slot counts as they arrive (each with the placement the worker ran).
public final class ExpertLoadEstimator: Sendable {
    /// Counts are kept in buckets of this length; the window slides bucket by bucket.
    let bucketLength: Duration
    /// The longest window anyone may ask for; older buckets are dropped.
    let retention: Duration

    private struct Bucket {
        var start: ContinuousClock.Instant
        var load: [[Double]]
        var reports: Int
    }

    private let state = Mutex([String: Deque<Bucket>]())
    private let clock = ContinuousClock()

    public init(bucketLength: Duration = .seconds(10), retention: Duration = .seconds(3_600)) {
        self.bucketLength = bucketLength
        self.retention = retention
    }

    /// Adds one report's slot counts. Reports counted under a version no longer known are skipped.
    public func add(_ experts: ExpertWindow, rank: Int, unit: DeploymentUnit, placement: Placement) {
        let now = clock.now
        let firstSlot = rank * unit.slotsPerGpu
        state.withLock { units in
            // In place: copying a unit's buckets out would copy layers x experts counts on every report.
            self.add(experts, firstSlot: firstSlot, unit: unit, placement: placement, at: now, to: &units[unit.id, default: []])
        }
    }

    private func add(
        _ experts: ExpertWindow, firstSlot: Int, unit: DeploymentUnit, placement: Placement,
        at now: ContinuousClock.Instant, to buckets: inout Deque<Bucket>
    ) {
        if buckets.last.map({ now - $0.start >= bucketLength }) ?? true {
            buckets.append(
                Bucket(
                    start: now,
                    load: Array(repeating: Array(repeating: 0, count: unit.model.routedExperts), count: unit.model.moeLayers),
                    reports: 0))
        }
        while let first = buckets.first, now - first.start > retention { buckets.removeFirst() }
        let last = buckets.count - 1
        if ExpertLoad.fold(experts.slotTokens, phy2log: placement.phy2log, firstSlot: firstSlot, into: &buckets[last].load) {
            buckets[last].reports += 1
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
            guard let buckets = units[id] else { return nil }
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
        state.withLock { $0[id] = nil }
    }
}
