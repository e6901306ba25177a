import FulcrumCore
import FulcrumStore
import Foundation
import Synchronization

/// Everything an on-call dashboard needs, computed from memory at the moment it is asked for (`GET /v1/metrics`).
/// The Prometheus exposition (`GET /metrics`) publishes the same figures.
struct MetricsSnapshot: Encodable, Sendable {
    /// A spread across ranks or GPUs: max/mean (1 is perfect, higher is worse) and mean/max (1 is perfect, lower
    /// is worse), with the max and mean themselves. Absent where nothing is measured.
    struct Balance: Encodable, Sendable {
        var maxOverMean: Double
        var meanOverMax: Double
        var max: Double
        var mean: Double

        init?(_ values: [Double]) {
            guard !values.isEmpty else { return nil }
            let mean = values.reduce(0, +) / Double(values.count)
            let max = values.max() ?? 0
            self.max = max
            self.mean = mean
            maxOverMean = mean > 0 ? max / mean : 1
            meanOverMax = max > 0 ? mean / max : 1
        }

        init(maxOverMean: Double, max: Double, mean: Double) {
            self.maxOverMean = maxOverMean
            meanOverMax = maxOverMean > 0 ? 1 / maxOverMean : 1
            self.max = max
            self.mean = mean
        }
    }

    struct Telemetry: Encodable, Sendable {
        /// Live ranks with a report since Fulcrum started.
        var reportingRanks: Int
        /// Live ranks whose figures are older than the staleness limit (or that never reported), and which.
        var staleRanks: Int
        var staleRankList: [Int]
        var ageP50Seconds: Double?
        var ageP99Seconds: Double?
    }

    struct Attention: Encodable, Sendable {
        /// `prefill` or `decode`.
        var balancer: String
        var paused: Bool
        /// `fulcrum`, or `least_tokens` while paused.
        var policy: String
        var assignmentsPerSecond: Double
        /// Over the eligible ranks' newest reports: prefill has work (attention work queued), tokens and
        /// requests; decode has kv (KV-cache tokens) and requests.
        var work: Balance?
        var tokens: Balance?
        var kv: Balance?
        var requests: Balance?
    }

    struct PlacementState: Encodable, Sendable {
        var version: Int
        var ageSeconds: Double
        /// Live ranks that acknowledged this version (or a newer one), of the live ranks.
        var ackedRanks: Int
        var liveRanks: Int
        var excludedRanks: [Int]
    }

    struct EPLB: Encodable, Sendable {
        var paused: Bool
        var placement: PlacementState
        /// Per-GPU expert load under the current placement and the unit's load window (Σ per-layer peak / Σ mean);
        /// absent without measured load.
        var expertLoad: Balance?
        var windowSeconds: Double
        var solveSeconds: LatencyWindow.Summary
        var lastRebalance: RebalanceService.LastRebalance?
        var activeExpertRules: Int
        /// Workers' placement polls waiting now for a new version.
        var parkedPolls: Int
    }

    struct Unit: Encodable, Sendable {
        var unit: String
        var role: Role
        var gpus: Int
        var workers: [String: Int]
        var telemetry: Telemetry
        var attention: Attention
        var eplb: EPLB
    }

    struct Phase: Encodable, Sendable {
        var perSecond: Double
        var total: Int
        var leastTokens: Int
        /// Time to choose ranks for one batch (from memory, lock held), over the last 4,096 batches.
        var batchSeconds: LatencyWindow.Summary
    }

    struct Writer: Encodable, Sendable {
        /// Seconds since a batch last reached PostgreSQL while rows wait (0 when nothing waits).
        var lagSeconds: Double
        var bufferedRows: Int
        var ledgerBufferedRows: Int
        var writtenRows: Int
        var droppedSamples: Int
        var droppedLedgerRows: Int
        var failedFlushes: Int
        /// Writes failed in a row since the last that landed.
        var consecutiveFailures: Int
        /// How long the write in flight has waited (0 between writes): a database that hangs shows here first.
        var writeWaitingSeconds: Double
        /// Age of the oldest row not yet in the database (0 when none).
        var oldestUnwrittenSeconds: Double
        var lastError: String?
    }

    struct Connections: Encodable, Sendable {
        /// HTTP connections open now.
        var open: Int
        /// Times since start the listener stopped accepting at `--max-connections`.
        var capReached: Int
    }

    struct Access: Encodable, Sendable {
        /// Calls refused with 403 `out_of_scope` since start: a scoped worker or gateway token used for another
        /// worker or unit.
        var outOfScopeRefusals: Int
    }

    var at: Date
    /// The expert-parallel balancer's checks (dead ranks, expert rules, scheduled solves) finished since start;
    /// one a second while it runs.
    var eplbChecks: Int
    var connections: Connections
    var access: Access
    var workers: [String: Int]
    var units: [Unit]
    var assignments: [String: Phase]
    var writer: Writer
}

extension MetricsSnapshot {
    static func byState(_ workers: [Worker]) -> [String: Int] {
        var counts = Dictionary(uniqueKeysWithValues: WorkerState.allCases.map { ($0.rawValue, 0) })
        for worker in workers { counts[worker.state.rawValue, default: 0] += 1 }
        return counts
    }

    /// Reads every part of the control plane once.
    static func take(_ services: Services, staleAfter: Duration) -> MetricsSnapshot {
        let fleet = services.fleet
        let now = Date()
        let instant = ContinuousClock.now
        let (rates, phases) = services.assignments.counters.withLock { counters in
            let rates = counters.units.mapValues { counter -> Double in
                var counter = counter
                return counter.perSecond(at: instant)
            }
            var prefill = counters.prefill
            var decode = counters.decode
            let phases = [
                "prefill": Phase(
                    perSecond: prefill.perSecond(at: instant), total: prefill.total,
                    leastTokens: counters.prefillLeastTokens, batchSeconds: counters.prefillSolve.summary),
                "decode": Phase(
                    perSecond: decode.perSecond(at: instant), total: decode.total, leastTokens: counters.decodeLeastTokens,
                    batchSeconds: counters.decodeSolve.summary),
            ]
            return (rates, phases)
        }
        let solveTimes = services.rebalancer.solveTimes.withLock { $0 }
        let lastRebalances = services.rebalancer.lastOutcomes.withLock { $0 }
        let parkedPolls = services.hub.parkedPolls()
        var units: [Unit] = []
        for unit in fleet.units() {
            let members = fleet.members(unit: unit.id)
            let live = members.filter { $0.worker.state.isLive }
            var ages: [Double] = []
            var stale: [Int] = []
            for member in live {
                let (age, isStale) = fleet.freshness(of: member, staleAfter: staleAfter)
                if let age { ages.append(age.seconds) }
                if isStale { stale.append(member.worker.rank) }
            }
            ages.sort()
            let controls = services.controls.controls(unit.id)
            let policy = services.controls.effective(unit.id)
            let reporting = members.filter { $0.worker.state == .active }.compactMap(\.report)
            var attention = Attention(
                balancer: unit.role.rawValue, paused: controls.paused.attention,
                policy: controls.paused.attention ? AssignmentService.leastTokensPolicy : AssignmentService.fulcrumPolicy,
                assignmentsPerSecond: rates[unit.id] ?? 0)
            switch unit.role {
            case .prefill:
                let loads = reporting.compactMap(\.prefill)
                attention.work = Balance(loads.map { Double($0.attentionWork) })
                attention.tokens = Balance(loads.map { Double($0.queuedTokens) })
                attention.requests = Balance(loads.map { Double($0.queuedRequests) })
            case .decode:
                let loads = reporting.compactMap(\.decode)
                attention.kv = Balance(loads.map { Double($0.kvTokensUsed) })
                attention.requests = Balance(loads.map { Double($0.runningRequests) })
            }
            let current = services.hub.current(for: unit)
            let liveRanks = Set(live.map(\.worker.rank))
            let deadRanks = Set(members.filter { !$0.worker.state.isLive }.map(\.worker.rank)).subtracting(liveRanks)
            var expertLoad: Balance?
            if let estimate = services.estimator.estimate(unit: unit.id, window: policy.window),
                estimate.weight.joined().contains(where: { $0 > 0 })
            {
                let load = PlacementLoad.evaluate(
                    current.phy2log, weight: estimate.weight, slotsPerGpu: unit.slotsPerGpu,
                    excludedRanks: Set(current.excludedRanks).union(deadRanks))
                let layers = Double(max(1, unit.model.moeLayers))
                expertLoad = Balance(
                    maxOverMean: load.balancedness, max: load.peakSum / layers, mean: load.meanSum / layers)
            }
            units.append(
                Unit(
                    unit: unit.id, role: unit.role, gpus: unit.gpus, workers: byState(members.map(\.worker)),
                    telemetry: Telemetry(
                        reportingRanks: live.count { $0.reportedAt != nil }, staleRanks: stale.count,
                        staleRankList: stale.sorted(), ageP50Seconds: ages.isEmpty ? nil : percentile(ages, 0.5),
                        ageP99Seconds: ages.isEmpty ? nil : percentile(ages, 0.99)),
                    attention: attention,
                    eplb: EPLB(
                        paused: controls.paused.eplb,
                        placement: PlacementState(
                            version: current.version, ageSeconds: max(0, now.timeIntervalSince(current.createdAt)),
                            ackedRanks: live.count { ($0.ackedVersion ?? 0) >= current.version },
                            liveRanks: live.count, excludedRanks: current.excludedRanks),
                        expertLoad: expertLoad, windowSeconds: policy.windowSeconds,
                        solveSeconds: (solveTimes[unit.id] ?? LatencyWindow()).summary,
                        lastRebalance: lastRebalances[unit.id],
                        activeExpertRules: controls.activeRules(at: now).count, parkedPolls: parkedPolls[unit.id] ?? 0)))
        }
        let stats = services.writer.stats
        let waiting = stats.buffered + stats.ledgerBuffered
        let writer = Writer(
            lagSeconds: waiting == 0 ? 0 : max(0, now.timeIntervalSince(stats.lastWrittenAt ?? services.startedAt)),
            bufferedRows: stats.buffered, ledgerBufferedRows: stats.ledgerBuffered, writtenRows: stats.written,
            droppedSamples: stats.dropped, droppedLedgerRows: stats.ledgerDropped, failedFlushes: stats.failedFlushes,
            consecutiveFailures: stats.consecutiveFailures,
            writeWaitingSeconds: stats.writingSince.map { max(0, now.timeIntervalSince($0)) } ?? 0,
            oldestUnwrittenSeconds: stats.oldestUnwrittenAt.map { max(0, now.timeIntervalSince($0)) } ?? 0,
            lastError: stats.lastError)
        return MetricsSnapshot(
            at: now, eplbChecks: services.rebalancer.checksCompleted,
            connections: Connections(
                open: services.connections.openConnections, capReached: services.connections.timesCapReached),
            access: Access(outOfScopeRefusals: services.events.outOfScopeRefusals),
            workers: byState(fleet.workers(unit: nil, state: nil)), units: units, assignments: phases,
            writer: writer)
    }
}
