import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The expert-parallel balancer at work: per unit, solves from the sliding-window load estimate every interval and
/// on demand, publishes only what beats the threshold, and re-places at once when the serving ranks change (a worker
/// died or came back).
///
/// One loop does every rebalance, one at a time, so two never race for the same version; operators' requests queue
/// behind it. Solving runs on the solver thread, never on the cooperative pool.
public final class RebalanceService: Service, Sendable {
    public struct Settings: Sendable {
        /// How often each unit is solved on schedule; zero: never (on demand and on worker changes only).
        public var interval: Duration = .seconds(600)
        /// A scheduled solve publishes only when it cuts the summed per-layer peak GPU load by more than this.
        public var minGain = 0.05
        /// At most this many replicas move in one rebalance (nil: no limit).
        public var maxMoves: Int?
        /// The expert-load window solved from.
        public var window: Duration = .seconds(600)
        /// How often dead and returning ranks are looked for.
        public var checkEvery: Duration = .seconds(1)
        /// After a failed re-placement for changed ranks, wait this long before trying again.
        public var retryAfter: Duration = .seconds(5)

        public init() {}
    }

    private enum Job: Sendable {
        case check
        case request(
            unit: DeploymentUnit, dryRun: Bool, audit: AuditEntry?, reply: CheckedContinuation<Outcome, any Error>)
    }

    let settings: Settings
    private let fleet: Fleet
    private let hub: PlacementHub
    private let estimator: ExpertLoadEstimator
    private let placements: PlacementService
    /// Operators' per-unit policy, paused balancers and expert rules.
    private let controls: UnitControlsBook
    private let events: EventCounters
    private let logger: Logger
    /// How long solves took, for the metrics.
    let solveTimes = Mutex([String: LatencyWindow]())
    /// The share of a step's time spent in the MoE layers, which expert balance speeds up: about half in DeepSeek's
    /// deployment (attention and communication take the rest).
    static let moeShare = 0.5
    /// The newest rebalance of each unit, for the metrics.
    let lastOutcomes = Mutex([String: LastRebalance]())
    /// Checks finished since start: a count that stops rising means the loop is stuck (a solve or a store call
    /// that does not return), which no other figure shows.
    private let completedChecks = Atomic<Int>(0)
    var checksCompleted: Int { completedChecks.load(ordering: .relaxed) }

    public struct LastRebalance: Codable, Sendable {
        /// `published`, `below_threshold`, `unchanged`, or `failed` (the solve or the publish threw).
        public enum Decision: String, Codable, Sendable, CaseIterable {
            case published
            case belowThreshold = "below_threshold"
            case heldByCost = "held_by_cost"
            case unchanged
            case failed
        }
        public var trigger: PlacementTrigger
        public var decision: Decision
        public var at: Date
        public var improvement: Double
        public var moved: Int
        /// What moving would cost and save (transfers, rounds, bytes, seconds, gainSeconds): why a scheduled
        /// solve was published or held by cost. Absent when it failed before the plan was made.
        public var transfer: PlacementTransfer? = nil
        /// Why it failed.
        public var error: String?
    }
    private let jobs: AsyncStream<Job>
    private let input: AsyncStream<Job>.Continuation
    private let clock: any ServiceClock
    /// Only the leader re-places experts on its own.
    private let leadership: Leadership

    init(
        settings: Settings, fleet: Fleet, hub: PlacementHub, estimator: ExpertLoadEstimator,
        placements: PlacementService, controls: UnitControlsBook, events: EventCounters, logger: Logger,
        clock: any ServiceClock = RealClock(), leadership: Leadership = .alone()
    ) {
        self.clock = clock
        self.leadership = leadership
        self.events = events
        self.settings = settings
        self.controls = controls
        self.fleet = fleet
        self.hub = hub
        self.estimator = estimator
        self.placements = placements
        var logger = logger
        logger[metadataKey: "component"] = "rebalancer"
        self.logger = logger
        (jobs, input) = AsyncStream.makeStream(of: Job.self)
    }

    /// Proposes a placement for `unit` now and, unless `dryRun`, publishes it with `audit` (an operator's request)
    /// in the audit trail.
    func rebalance(_ unit: DeploymentUnit, dryRun: Bool, audit: AuditEntry? = nil) async throws -> Outcome {
        if !dryRun, controls.paused(unit.id, .eplb) {
            throw ServiceRefusal.balancerPaused(unit: unit.id)
        }
        return try await withCheckedThrowingContinuation { continuation in
            if case .terminated = input.yield(.request(unit: unit, dryRun: dryRun, audit: audit, reply: continuation)) {
                continuation.resume(
                    throwing: ServiceRefusal.shuttingDown)
            }
        }
    }

    public func run() async throws {
        var schedule = Schedule()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [input, every = settings.checkEvery] in
                while !Task.isCancelled {
                    try? await self.clock.sleep(for: every)
                    if case .terminated = input.yield(.check) { return }
                }
            }
            await withGracefulShutdownHandler {
                for await job in jobs {
                    switch job {
                    case .check where leadership.isLeader:
                        await check(&schedule)
                        completedChecks.add(1, ordering: .relaxed)
                    case .check:
                        // A standby starts afresh when it leads: what it remembered may be out of date.
                        schedule = Schedule()
                    case .request(let unit, let dryRun, let audit, let reply):
                        do {
                            reply.resume(
                                returning: try await propose(unit, trigger: .manual, dryRun: dryRun, audit: audit))
                        } catch {
                            reply.resume(throwing: error)
                        }
                    }
                }
            } onGracefulShutdown: { [input] in
                input.finish()
            }
            group.cancelAll()
        }
    }

    /// What the loop remembers between checks.
    private struct Schedule {
        /// When each unit's next scheduled solve is due, and the interval that set it.
        var due: [String: (at: ContinuousClock.Instant, interval: Duration)] = [:]
        /// The ids of the expert rules in force last acted on, per unit.
        var rules: [String: Set<Int>] = [:]
        /// The dead ranks last acted on, per unit. When a unit is first seen: the dead ranks its placement already
        /// excludes, so a rank that died while Fulcrum was down is placed around at once, and ranks an operator
        /// excluded are left alone.
        var dead: [String: Set<Int>] = [:]
        /// A re-placement for these dead ranks failed; not retried before `retryAt`, backing off.
        var failed: [String: (dead: Set<Int>, retryAt: ContinuousClock.Instant, attempts: Int)] = [:]
    }

    /// Re-places every unit whose dead ranks changed, then runs at most one scheduled solve (the most overdue), so
    /// a check never keeps a dead rank or an operator's request waiting behind a round of solves.
    private func check(_ schedule: inout Schedule) async {
        let now = clock.now
        let date = Date()
        // A paused balancer publishes nothing: its units are not looked at until resumed, and then catch up.
        let units = fleet.units().filter { !controls.paused($0.id, .eplb) }
        let liveness = fleet.rankLiveness()
        for unit in units {
            // A unit with no live worker is down (or being retired): there is nothing to place experts on.
            guard let ranks = liveness[unit.id], !ranks.live.isEmpty else { continue }
            let active = controls.controls(unit.id).activeRules(at: date)
            let rules = Set(active.map(\.id))
            if schedule.rules[unit.id] == nil {
                // First seen (or after a restart): act when the table in use breaks a rule in force.
                let current = hub.current(for: unit)
                let honoured = current.phy2log.indices.allSatisfy { layer in
                    ExpertRules.honoured(
                        active, row: current.phy2log[layer], layer: layer, slotsPerGpu: unit.slotsPerGpu,
                        excludedRanks: Set(current.excludedRanks))
                }
                schedule.rules[unit.id] = honoured ? rules : []
            }
            if schedule.rules[unit.id] != rules {
                // A rule was added, removed or expired: honour the rules in force now. A failure is logged and not
                // retried until the rules change again (the next scheduled solve honours them too).
                do {
                    _ = try await propose(unit, trigger: .expertRule, dryRun: false)
                } catch {
                    logger.error(
                        "cannot re-place experts after the expert rules changed",
                        metadata: ["unit": "\(unit.id)", "error": "\(error)"])
                }
                schedule.rules[unit.id] = rules
            }
            let dead = ranks.dead.subtracting(ranks.live)
            let acted = schedule.dead[unit.id] ?? Set(hub.current(for: unit).excludedRanks).intersection(dead)
            schedule.dead[unit.id] = acted
            guard dead != acted else {
                schedule.failed[unit.id] = nil
                continue
            }
            let failed = schedule.failed[unit.id].flatMap { $0.dead == dead ? $0 : nil }
            if let failed, now < failed.retryAt { continue }
            do {
                _ = try await propose(unit, trigger: .workerChange, dryRun: false)
                schedule.dead[unit.id] = dead
                schedule.failed[unit.id] = nil
            } catch {
                let attempts = (failed?.attempts ?? 0) + 1
                let backoff = min(settings.retryAfter * (1 << min(attempts - 1, 6)), .seconds(300))
                schedule.failed[unit.id] = (dead, now + backoff, attempts)
                let metadata: Logger.Metadata = [
                    "unit": "\(unit.id)", "dead_ranks": "\(dead.sorted())", "error": "\(error)",
                    "attempts": "\(attempts)", "retry_in": "\(backoff)",
                ]
                if attempts == 1 {
                    logger.error("cannot re-place experts after the serving ranks changed", metadata: metadata)
                } else {
                    logger.debug("re-placing experts failed again", metadata: metadata)
                }
            }
        }
        for unit in units {
            let interval = controls.effective(unit.id).interval
            if interval <= .zero {
                schedule.due[unit.id] = nil
            } else if schedule.due[unit.id]?.interval != interval {
                // First seen, or its interval changed: the next solve is one interval from now.
                schedule.due[unit.id] = (now + interval, interval)
            }
        }
        if let unit = units.filter({ schedule.due[$0.id].map { now >= $0.at } ?? false })
            .min(by: { schedule.due[$0.id]?.at ?? now < schedule.due[$1.id]?.at ?? now }),
            let interval = schedule.due[unit.id]?.interval
        {
            schedule.due[unit.id] = (now + interval, interval)
            // A unit with no tokens routed in the window (idle, or its reports carry zero counts) has nothing to
            // solve on schedule: propose would only refuse it with no_expert_load.
            let estimate = estimator.estimate(unit: unit.id, window: controls.effective(unit.id).window)
            if estimate.map({ $0.weight.joined().reduce(0, +) }) ?? 0 > 0 {
                do {
                    _ = try await propose(unit, trigger: .schedule, dryRun: false)
                } catch {
                    logger.warning("scheduled rebalance failed", metadata: ["unit": "\(unit.id)", "error": "\(error)"])
                }
            } else {
                logger.debug("no expert load reported; nothing to rebalance", metadata: ["unit": "\(unit.id)"])
            }
        }
        // Paused units keep what was last acted on, so that they catch up when resumed.
        let known = Set(fleet.units().map(\.id))
        schedule.due = schedule.due.filter { known.contains($0.key) }
        schedule.dead = schedule.dead.filter { known.contains($0.key) }
        schedule.failed = schedule.failed.filter { known.contains($0.key) }
        schedule.rules = schedule.rules.filter { known.contains($0.key) }
    }

    /// Ranks whose worker is dead and that no live worker has taken over.
    func deadRanks(of unit: DeploymentUnit) -> Set<Int> {
        guard let ranks = fleet.rankLiveness()[unit.id] else { return [] }
        return ranks.dead.subtracting(ranks.live)
    }

    /// Proposes and, unless a dry run, publishes; a failure is kept as the unit's last rebalance, so that a balancer
    /// that keeps failing shows in the metrics and not only in the log.
    private func propose(_ unit: DeploymentUnit, trigger: PlacementTrigger, dryRun: Bool, audit: AuditEntry? = nil)
        async throws -> Outcome
    {
        do {
            return try await attempt(unit, trigger: trigger, dryRun: dryRun, audit: audit)
        } catch {
            if !dryRun {
                let message = "\(error)"
                lastOutcomes.withLock {
                    $0[unit.id] = LastRebalance(
                        trigger: trigger, decision: .failed, at: Date(), improvement: 0, moved: 0, error: message)
                }
            }
            throw error
        }
    }

    private func attempt(_ unit: DeploymentUnit, trigger: PlacementTrigger, dryRun: Bool, audit: AuditEntry?)
        async throws -> Outcome
    {
        let current = hub.current(for: unit)
        let excluded = deadRanks(of: unit)
        let policy = controls.effective(unit.id)
        let rules = controls.controls(unit.id).activeRules(at: Date())
        let estimate = estimator.estimate(unit: unit.id, window: policy.window)
        let measured = estimate.map { $0.weight.joined().reduce(0, +) } ?? 0
        let weight: [[Double]]
        if let estimate, measured > 0 {
            weight = estimate.weight
        } else if trigger == .workerChange || trigger == .expertRule {
            // The serving ranks changed before any load was measured: spread replicas evenly over the survivors.
            weight = Array(
                repeating: Array(repeating: 1, count: unit.model.routedExperts), count: unit.model.moeLayers)
        } else {
            throw ServiceRefusal.noExpertLoad(unit: unit.id, window: policy.window)
        }
        let started = clock.now
        let maxMoves = policy.maxMoves
        let expertBytes = policy.expertBytes
        let proposal: RebalanceProposal
        let plan: MigrationPlan
        do {
            // The migration plan too: on a start-up table it is thousands of transfers, work for the solver's
            // thread, not the request threads.
            (proposal, plan) = try await SolverQueue.run { () throws(EPLBError) -> (RebalanceProposal, MigrationPlan) in
                let proposal = try RebalancePlanner.propose(
                    unit: unit, current: current.phy2log, weight: weight, excludedRanks: excluded, maxMoves: maxMoves,
                    rules: rules)
                let plan = MigrationPlan.make(
                    from: current.phy2log, to: proposal.phy2log, slotsPerGpu: unit.slotsPerGpu,
                    gpusPerNode: unit.gpusPerNode, excludedRanks: Set(proposal.excludedRanks), expertBytes: expertBytes)
                return (proposal, plan)
            }
        } catch {
            throw ServiceRefusal.unsolvable(error.message, field: "unit")
        }
        let solveTime = clock.now - started
        solveTimes.withLock { $0[unit.id, default: LatencyWindow()].record(solveTime.seconds) }
        events.solved(in: solveTime)
        let window = LoadWindowSummary(
            windowSeconds: policy.window.seconds, spanSeconds: estimate?.spans.seconds ?? 0,
            reports: estimate?.reports ?? 0, totalTokens: measured)
        let ranksChanged = proposal.excludedRanks != current.excludedRanks
        let transfer = PlacementTransfer(
            transfers: plan.transfers.count, rounds: plan.rounds.count, bytes: plan.bytes,
            seconds: Double(plan.rounds.count) * Double(policy.expertBytes) / (policy.linkGBps * 1e9),
            gainSeconds: proposal.improvement * policy.rebalanceIntervalSeconds * Self.moeShare)
        let decision: Outcome.Decision
        switch trigger {
        case _ where dryRun: decision = .dryRun
        case _ where ranksChanged: decision = .published
        case _ where proposal.moved == 0: decision = .unchanged
        case .schedule where proposal.improvement <= policy.minGain: decision = .belowThreshold
        case .schedule where transfer.gainSeconds < transfer.seconds: decision = .heldByCost
        default: decision = .published
        }
        var version: Int?
        if decision == .published {
            let details = PlacementDetails(
                trigger: trigger, basedOn: current.version,
                prediction: PlacementPrediction(
                    balancednessBefore: proposal.before.balancedness, balancednessAfter: proposal.after.balancedness,
                    improvement: proposal.improvement, moved: proposal.moved),
                window: window, transfer: transfer,
                audit: audit.map { entry in
                    var entry = entry
                    entry.before = .object(["version": .int(current.version)])
                    entry.after = .object([
                        "version": .int(current.version + 1), "improvement": .double(proposal.improvement),
                        "moved": .int(proposal.moved),
                    ])
                    return entry
                })
            version =
                try await placements.publish(
                    unit: unit, phy2log: proposal.phy2log, excludedRanks: proposal.excludedRanks, details: details,
                    plan: plan
                ).version
        } else if !dryRun {
            logger.info(
                "rebalance not published",
                metadata: [
                    "unit": "\(unit.id)", "trigger": "\(trigger.rawValue)", "decision": "\(decision.rawValue)",
                    "improvement": "\(proposal.improvement)", "min_gain": "\(policy.minGain)",
                    "gain_seconds": "\(transfer.gainSeconds)", "transfer_seconds": "\(transfer.seconds)",
                ])
        }
        if !dryRun {
            let last: LastRebalance.Decision =
                switch decision {
                case .published: .published
                case .belowThreshold: .belowThreshold
                case .heldByCost: .heldByCost
                case .unchanged, .dryRun: .unchanged
                }
            lastOutcomes.withLock {
                $0[unit.id] = LastRebalance(
                    trigger: trigger, decision: last, at: Date(), improvement: proposal.improvement,
                    moved: proposal.moved, transfer: transfer)
            }
        }
        return Outcome(
            unit: unit.id, trigger: trigger, decision: decision, published: version != nil, basedOn: current.version,
            version: version, excludedRanks: proposal.excludedRanks, window: window,
            before: .init(proposal.before), after: .init(proposal.after), improvement: proposal.improvement,
            minGain: policy.minGain, moved: proposal.moved, maxMoves: policy.maxMoves,
            movedPerLayer: proposal.movedPerLayer, layersKept: proposal.layersKept, solveSeconds: solveTime.seconds,
            transfer: transfer, phy2log: proposal.phy2log)
    }

    /// What a rebalance proposed, and what became of it.
    public struct Outcome: Encodable, Sendable {
        public enum Decision: String, Codable, Sendable {
            case published
            case dryRun = "dry_run"
            /// A scheduled solve whose predicted gain did not beat the threshold.
            case belowThreshold = "below_threshold"
            /// The proposal is the current placement.
            case unchanged
            /// A scheduled solve whose gain over the next interval would not repay copying the weights.
            case heldByCost = "held_by_cost"
        }

        /// A placement's predicted cost under the window's load.
        public struct Figures: Codable, Sendable {
            /// Σ per-layer peak GPU load / Σ mean: 1.0 is perfect.
            public var balancedness: Double
            /// Σ over layers of the busiest serving GPU's tokens.
            public var peakLoad: Double
            public var meanLoad: Double
            /// (layer, expert) pairs with no replica on a serving rank, and their tokens (left out of the loads above).
            public var unservedExperts: Int
            public var unservedTokens: Double

            init(_ load: PlacementLoad) {
                balancedness = load.balancedness
                peakLoad = load.peakSum
                meanLoad = load.meanSum
                unservedExperts = load.unservedExperts
                unservedTokens = load.unservedTokens
            }
        }

        public var unit: String
        public var trigger: PlacementTrigger
        public var decision: Decision
        public var published: Bool
        /// The version the proposal was made against.
        public var basedOn: Int
        /// The version published, when one was.
        public var version: Int?
        public var excludedRanks: [Int]
        public var window: LoadWindowSummary
        public var before: Figures
        public var after: Figures
        /// 1 − after/before of the summed per-layer peak GPU load.
        public var improvement: Double
        public var minGain: Double
        public var moved: Int
        public var maxMoves: Int?
        public var movedPerLayer: [Int]
        public var layersKept: Int
        public var solveSeconds: Double
        public var transfer: PlacementTransfer
        public var phy2log: [[Int]]
    }
}
