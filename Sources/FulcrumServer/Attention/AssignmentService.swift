import DequeModule
import FulcrumCore
import FulcrumStore
import Foundation
import Synchronization

/// The prefill and decode core-attention balancers at work: gateways' batches in, a rank for each request out, from
/// memory only. Each phase keeps, behind its own lock, the requests it assigned (so a retried id gets the same
/// answer) and a load model per rank (the last report plus what was assigned since, minus what finished). Every
/// decision goes to the ledger through the background writer.
public final class AssignmentService: Sendable {
    public struct Settings: Sendable {
        public var staleAfter: Duration = .seconds(2)
        public var policy: StalenessPolicy = .lastPlusAssigned
        /// Output tokens per second of one decode request, until a rank reports its own rate.
        public var decodeTokensPerSecond = 20.0
        /// Assigned ids are remembered this long, for idempotent retries and finishes; the ledger keeps them after.
        public var memory: Duration = .seconds(600)
        /// At most this many remembered ids per phase; the oldest go first.
        public var memoryLimit = 1_000_000

        public init() {}
    }

    /// One request's answer.
    public struct Assignment: Codable, Hashable, Sendable {
        public var id: String
        public var unit: String
        public var worker: String
        public var rank: Int
        /// `fulcrum`, or `least_tokens` where an operator paused the unit's attention balancer.
        public var policy: String
    }

    /// The ledger's and the answers' name of the policy that chose a rank.
    static let fulcrumPolicy = "fulcrum"
    static let leastTokensPolicy = "least_tokens"

    /// A request of a decode batch that could not be placed, and why.
    public struct Refusal: Codable, Hashable, Sendable {
        public var index: Int
        public var id: String
        public var code: String
        public var message: String
    }

    public struct Answer: Sendable {
        /// In request order; refused requests are absent.
        public var assignments: [Assignment]
        public var errors: [Refusal]
    }

    /// What is remembered of an assigned request: its answer and what a finish needs. Kept small (the full
    /// record goes to the ledger): at 50,000 assignments a second the book holds millions.
    private struct Remembered: Sendable {
        var unit: String
        var worker: String
        var rank: Int
        var contextTokens: Int
        var assignedAt: Date
        var finished = false
        var leastTokens = false

        init(_ record: AssignmentRecord) {
            unit = record.unit
            worker = record.worker
            rank = record.rank
            contextTokens = record.contextTokens ?? 0
            assignedAt = record.assignedAt
            leastTokens = record.policy == AssignmentService.leastTokensPolicy
        }

        func answer(_ id: String) -> Assignment {
            Assignment(
                id: id, unit: unit, worker: worker, rank: rank,
                policy: leastTokens ? AssignmentService.leastTokensPolicy : AssignmentService.fulcrumPolicy)
        }
    }

    private typealias Book = AssignmentBook<Remembered, ContinuousClock.Instant>

    /// After a load (start-up, a takeover): the ledger's recent assignments, oldest first, so a gateway's retry of
    /// an id an earlier leader answered gets that answer and its finish is recorded. Rank models and holds start
    /// afresh from the next reports, as after a restart.
    public func restore(_ records: [AssignmentRecord]) {
        let (date, instant) = (clock.date, clock.now)
        func book(_ phase: Role) -> Book {
            var book = Book()
            for record in records where record.phase == phase {
                var entry = Remembered(record)
                entry.finished = record.finishedAt != nil
                let age = max(0, date.timeIntervalSince(record.assignedAt))
                book.remember(record.requestID, entry, at: instant - .seconds(age))
            }
            book.expire(before: instant - settings.memory, limit: settings.memoryLimit)
            return book
        }
        prefill.withLock { $0 = PrefillState(book: book(.prefill)) }
        decode.withLock { $0 = DecodeState(book: book(.decode)) }
    }

    /// The answers already given to these ids (a gateway's retry), and the positions of the ids never seen.
    private static func answers(_ book: Book, _ ids: [String]) -> (answers: [Assignment?], fresh: [Int]) {
        let (known, fresh) = book.lookup(ids)
        return (zip(ids, known).map { id, entry in entry?.answer(id) }, fresh)
    }

    private struct PrefillState {
        var book = Book()
        var ranks: [String: PrefillRankModel] = [:]
    }

    private struct DecodeState {
        var book = Book()
        var ranks: [String: DecodeRankModel] = [:]
        /// Requests held back, and since when (seconds since the reference date).
        var holds = DecodeHolds()
    }

    private let prefill = Mutex(PrefillState())
    private let decode = Mutex(DecodeState())
    let fleet: Fleet
    let writer: TelemetryWriter
    let settings: Settings
    /// Operators' per-unit staleness policies and paused attention balancers.
    let controls: UnitControlsBook
    let events: EventCounters
    private let clock: any ServiceClock
    /// Assignments made, per phase, for the metrics.
    let counters = Mutex(Counters())

    struct Counters {
        var prefill = RateCounter()
        var decode = RateCounter()
        var prefillLeastTokens = 0
        var decodeLeastTokens = 0
        var prefillSolve = LatencyWindow()
        var decodeSolve = LatencyWindow()
        var units: [String: RateCounter] = [:]
    }

    init(
        fleet: Fleet, writer: TelemetryWriter, settings: Settings, controls: UnitControlsBook, events: EventCounters,
        clock: any ServiceClock = RealClock()
    ) {
        self.clock = clock
        self.events = events
        self.fleet = fleet
        self.writer = writer
        self.settings = settings
        self.controls = controls
    }

    // MARK: Assigning

    /// `?unit=` must name a unit of this phase. `units` is `?unit=` alone, or a scoped gateway's units.
    private func checkUnit(_ units: Set<String>?, role: Role) throws {
        guard let units, units.count == 1, let unit = units.first else { return }
        guard let found = fleet.unit(unit) else { throw RegistryError.unitNotFound(unit) }
        guard found.role == role else {
            throw ServiceRefusal.wrongPhase(unit: unit, role: found.role)
        }
    }

    /// The eligible ranks of the phase, or an error when no rank can take work.
    private func candidates(_ role: Role, units only: Set<String>?, stalePolicies: [String: StalenessPolicy]) throws
        -> [(unit: DeploymentUnit, ranks: [Fleet.Candidate])]
    {
        let units = fleet.eligible(
            role: role, units: only, staleAfter: settings.staleAfter, policy: settings.policy, unitPolicies: stalePolicies)
        guard !units.isEmpty else {
            throw ServiceRefusal.noEligibleWorkers(role: role, units: only)
        }
        return units
    }

    public func assign(prefill requests: [PrefillRequest], unit: String?) throws -> Answer {
        try assign(prefill: requests, units: unit.map { [$0] })
    }

    /// Assigns among `units` only (nil: every unit of the phase).
    public func assign(prefill requests: [PrefillRequest], units unit: Set<String>?) throws -> Answer {
        try AssignmentLimits.validate(requests)
        try checkUnit(unit, role: .prefill)
        // A gateway retrying a batch that was answered gets its answers, whatever has happened to the ranks since.
        let known = prefill.withLock { Self.answers($0.book, requests.map(\.id)) }
        if known.fresh.isEmpty { return Answer(assignments: known.answers.compactMap { $0 }, errors: []) }
        let operated = controls.attentionSettings()
        let units = try candidates(.prefill, units: unit, stalePolicies: operated.stalePolicies)
        let now = clock.date
        let instant = clock.now
        let (answers, records) = prefill.withLock { state -> ([Assignment], [AssignmentRecord]) in
            var (answers, fresh) = Self.answers(state.book, requests.map(\.id))
            guard !fresh.isEmpty else { return (answers.compactMap { $0 }, []) }
            var ranks = units.map { unit, candidates in
                candidates.map { candidate -> PrefillRank in
                    let worker = candidate.worker
                    let model = prefillModel(state.ranks[worker.id], for: candidate)
                    state.ranks[worker.id] = model
                    return model.rank(budget: worker.capacity.maxBatchTokens)
                }
            }
            let before = ranks.map { $0.map { $0.profile.reduce(0, +) } }
            let placed = PrefillBalancer.assign(fresh.map { requests[$0] }, units: &ranks)
            var records: [AssignmentRecord] = []
            for (position, index) in fresh.enumerated() {
                guard var place = placed[position] else { continue }
                let request = requests[index]
                let paused = operated.paused.contains(units[place.unit].unit.id)
                if paused {
                    // The unit's balancer is paused: the rank with the fewest tokens queued, as simple routers do.
                    let tokens = units[place.unit].ranks.map { candidate in
                        state.ranks[candidate.worker.id].map { $0.queue.reduce(0) { $0 + $1.remaining } + $0.opaqueTokens } ?? 0
                    }
                    place.rank = tokens.indices.min { (tokens[$0], $0) < (tokens[$1], $1) } ?? place.rank
                }
                let (unit, candidate) = (units[place.unit].unit, units[place.unit].ranks[place.rank])
                let worker = candidate.worker
                state.ranks[worker.id]?.assigned(request, at: now)
                let model = state.ranks[worker.id]
                let costs = before[place.unit]
                let record = AssignmentRecord(
                    requestID: request.id, phase: .prefill, unit: unit.id, worker: worker.id, rank: worker.rank,
                    inputTokens: request.inputTokens, cachedTokens: request.cachedTokens, cost: request.attentionWork,
                    rankTokens: Double((model?.queue.dropLast().reduce(0) { $0 + $1.remaining } ?? 0) + (model?.opaqueTokens ?? 0)),
                    rankRequests: Double(max(0, (model?.queue.count ?? 1) - 1)), rankCost: costs[place.rank],
                    unitMeanCost: costs.reduce(0, +) / Double(max(1, costs.count)), unitMaxCost: costs.max() ?? 0,
                    telemetryAgeSeconds: candidate.age?.seconds, policy: paused ? Self.leastTokensPolicy : Self.fulcrumPolicy,
                    assignedAt: now)
                state.book.remember(record.requestID, Remembered(record), at: instant)
                records.append(record)
                answers[index] = Self.answer(record)
            }
            state.book.expire(before: instant - settings.memory, limit: settings.memoryLimit)
            return (answers.compactMap { $0 }, records)
        }
        count(records, phase: .prefill, since: instant)
        writer.record(assignments: records)
        return Answer(assignments: answers, errors: [])
    }

    /// `allowHold`: the gateway offers `held_back` and `no_kv_capacity` requests again, so a request may wait there
    /// for room on the right rank; without it every request a rank could ever hold is placed (when caches are
    /// full, to wait in the queue of the rank where it costs least).
    public func assign(decode requests: [DecodeRequest], unit: String?, allowHold: Bool = false) throws -> Answer {
        try assign(decode: requests, units: unit.map { [$0] }, allowHold: allowHold)
    }

    /// Assigns among `units` only (nil: every unit of the phase).
    public func assign(decode requests: [DecodeRequest], units unit: Set<String>?, allowHold: Bool = false) throws -> Answer {
        try AssignmentLimits.validate(requests)
        try checkUnit(unit, role: .decode)
        let known = decode.withLock { Self.answers($0.book, requests.map(\.id)) }
        if known.fresh.isEmpty { return Answer(assignments: known.answers.compactMap { $0 }, errors: []) }
        let operated = controls.attentionSettings()
        let units = try candidates(.decode, units: unit, stalePolicies: operated.stalePolicies)
        let now = clock.date
        let instant = clock.now
        let (answer, records) = decode.withLock { state -> (Answer, [AssignmentRecord]) in
            var (answers, fresh) = Self.answers(state.book, requests.map(\.id))
            guard !fresh.isEmpty else { return (Answer(assignments: answers.compactMap { $0 }, errors: []), []) }
            var rates = 0.0
            var ranks = units.map { unit, candidates in
                candidates.map { candidate -> DecodeRank in
                    let worker = candidate.worker
                    let model = decodeModel(state.ranks[worker.id], for: candidate)
                    state.ranks[worker.id] = model
                    rates += model.rate
                    return model.rank(now: now, capacity: worker.capacity.kvTokens)
                }
            }
            let before = ranks
            let batch = fresh.map { requests[$0] }
            let seconds = now.timeIntervalSinceReferenceDate
            // A decode step lasts about as long as one request takes to make a token.
            let count = Double(ranks.joined().count)
            let stepSeconds = rates > 0 ? count / rates : nil
            let outcomes = DecodeBalancer.decide(
                batch, units: &ranks,
                mayHold: state.holds.mayHold(batch, allowed: allowHold, now: seconds, stepSeconds: stepSeconds))
            state.holds.record(batch, outcomes, now: seconds)
            var records: [AssignmentRecord] = []
            var errors: [Refusal] = []
            for (position, index) in fresh.enumerated() {
                let request = requests[index]
                var place: DecodeBalancer.Placement
                switch outcomes[position] {
                case .placed(let placement):
                    place = placement
                case .noRoom:
                    let ranks = before.joined()
                    let largest = ranks.map(\.capacity).max() ?? 0
                    errors.append(
                        Refusal(
                            index: index, id: request.id, code: "no_kv_capacity",
                            message: Double(request.reservedTokens) > largest
                                ? "no decode rank can hold \(request.reservedTokens) KV-cache tokens "
                                    + "(contextTokens + maxNewTokens); the largest cache is \(Int(largest))"
                                : "no decode rank has \(request.reservedTokens) KV-cache tokens free now; the most any "
                                    + "rank has is \(Int(ranks.map(\.free).max() ?? 0)); offer it again shortly"))
                    continue
                case .heldBack:
                    errors.append(
                        Refusal(
                            index: index, id: request.id, code: "held_back",
                            message: "only the unit's busiest ranks have room for it and a less loaded rank is about "
                                + "to free some; offer it again shortly (after \(Int(DecodeBalancer.holdLimit)) s "
                                + "held it is placed wherever there is room)"))
                    continue
                }
                let paused = operated.paused.contains(units[place.unit].unit.id)
                if paused {
                    // The unit's balancer is paused: the rank with the fewest KV tokens that has room.
                    let ranks = units[place.unit].ranks.map { candidate in
                        state.ranks[candidate.worker.id]?.rank(now: now, capacity: candidate.worker.capacity.kvTokens)
                    }
                    let fits = ranks.indices.filter { (ranks[$0]?.free ?? 0) >= Double(request.reservedTokens) }
                    place.rank =
                        fits.min { (ranks[$0]?.kvTokens ?? 0, $0) < (ranks[$1]?.kvTokens ?? 0, $1) } ?? place.rank
                }
                let (unit, candidate) = (units[place.unit].unit, units[place.unit].ranks[place.rank])
                let worker = candidate.worker
                state.ranks[worker.id]?.assigned(request, at: now)
                let rank = before[place.unit][place.rank]
                let costs = before[place.unit].map(\.stepCost)
                let record = AssignmentRecord(
                    requestID: request.id, phase: .decode, unit: unit.id, worker: worker.id, rank: worker.rank,
                    contextTokens: request.contextTokens, maxNewTokens: request.maxNewTokens,
                    cost: Double(request.reservedTokens), rankTokens: rank.kvTokens, rankRequests: rank.requests,
                    rankCost: rank.stepCost, unitMeanCost: costs.reduce(0, +) / Double(max(1, costs.count)),
                    unitMaxCost: costs.max() ?? 0, telemetryAgeSeconds: candidate.age?.seconds,
                    policy: paused ? Self.leastTokensPolicy : Self.fulcrumPolicy, assignedAt: now)
                state.book.remember(record.requestID, Remembered(record), at: instant)
                records.append(record)
                answers[index] = Self.answer(record)
            }
            state.book.expire(before: instant - settings.memory, limit: settings.memoryLimit)
            state.holds.prune(now: seconds)
            return (Answer(assignments: answers.compactMap { $0 }, errors: errors), records)
        }
        count(records, phase: .decode, since: instant)
        writer.record(assignments: records)
        return answer
    }

    static func answer(_ record: AssignmentRecord) -> Assignment {
        Assignment(id: record.requestID, unit: record.unit, worker: record.worker, rank: record.rank, policy: record.policy)
    }

    /// Counts a batch's assignments and how long choosing them took, for the metrics.
    private func count(_ records: [AssignmentRecord], phase: Role, since started: ContinuousClock.Instant) {
        let now = clock.now
        let elapsed = now - started
        let leastTokens = records.count { $0.policy == Self.leastTokensPolicy }
        events.assign(records.count - leastTokens, phase: phase, policy: Self.fulcrumPolicy)
        events.assign(leastTokens, phase: phase, policy: Self.leastTokensPolicy)
        events.batch(phase, took: elapsed)
        var perUnit: [String: Int] = [:]
        for record in records { perUnit[record.unit, default: 0] += 1 }
        counters.withLock { counters in
            for (unit, count) in perUnit { counters.units[unit, default: RateCounter()].add(count, at: now) }
            switch phase {
            case .prefill:
                counters.prefill.add(records.count, at: now)
                counters.prefillLeastTokens += leastTokens
                counters.prefillSolve.record(elapsed.seconds)
            case .decode:
                counters.decode.add(records.count, at: now)
                counters.decodeLeastTokens += leastTokens
                counters.decodeSolve.record(elapsed.seconds)
            }
        }
    }

    /// The rank's model, started afresh when the worker registered again (its engine restarted: its queue is gone).
    private func prefillModel(_ model: PrefillRankModel?, for candidate: Fleet.Candidate) -> PrefillRankModel {
        if let model, model.epoch == candidate.epoch { return model }
        var fresh = PrefillRankModel(epoch: candidate.epoch)
        if let load = candidate.prefill, let age = candidate.age {
            fresh.observe(load, sentAt: clock.date.addingTimeInterval(-age.seconds))
        }
        return fresh
    }

    private func decodeModel(_ model: DecodeRankModel?, for candidate: Fleet.Candidate) -> DecodeRankModel {
        if let model, model.epoch == candidate.epoch { return model }
        var fresh = DecodeRankModel(epoch: candidate.epoch, rate: settings.decodeTokensPerSecond)
        if let load = candidate.decode, let age = candidate.age {
            fresh.observe(
                load, sentAt: clock.date.addingTimeInterval(-age.seconds), defaultRate: settings.decodeTokensPerSecond)
        }
        return fresh
    }

    // MARK: Telemetry and finishes

    /// A worker's applied report: its figures become the base of its rank's model, and its `finished` ids leave.
    func observe(_ report: TelemetryReport, worker: Worker, epoch: Int, role: Role) {
        // Fulcrum's own clock, not the worker's `sentAt`: a worker whose clock runs ahead would otherwise have
        // assignments it has not seen taken as counted in its figures.
        let now = clock.date
        var finishes: [RequestFinish] = []
        // Unknown ids (another router's, or long forgotten) match nothing: they never refuse the report, and are
        // counted.
        let admitted = report.admitted.map(Set.init)
        var unknown = (admitted: 0, finished: 0)
        func isUnknown(_ entry: Remembered?) -> Bool { entry.map { $0.worker != worker.id } ?? true }
        switch role {
        case .prefill:
            prefill.withLock { state in
                unknown = (
                    (report.admitted ?? []).count { isUnknown(state.book[$0]) },
                    (report.finished ?? []).count { isUnknown(state.book[$0]) }
                )
                var model = state.ranks[worker.id].flatMap { $0.epoch == epoch ? $0 : nil } ?? PrefillRankModel(epoch: epoch)
                for id in report.finished ?? [] {
                    guard let entry = state.book[id], entry.worker == worker.id, !entry.finished else { continue }
                    model.finished(id)
                    state.book[id]?.finished = true
                    finishes.append(RequestFinish(requestID: id, phase: .prefill, at: now))
                }
                if let load = report.prefill {
                    model.observe(load, sentAt: now, finishes: report.finished?.count ?? 0, admitted: admitted)
                }
                state.ranks[worker.id] = model
            }
        case .decode:
            decode.withLock { state in
                unknown = (
                    (report.admitted ?? []).count { isUnknown(state.book[$0]) },
                    (report.finished ?? []).count { isUnknown(state.book[$0]) }
                )
                var model =
                    state.ranks[worker.id].flatMap { $0.epoch == epoch ? $0 : nil }
                    ?? DecodeRankModel(epoch: epoch, rate: settings.decodeTokensPerSecond)
                for id in report.finished ?? [] {
                    guard let entry = state.book[id], entry.worker == worker.id else { continue }
                    // The report's figures already leave it out.
                    model.finishedInReport(id)
                    if entry.finished { continue }
                    state.book[id]?.finished = true
                    finishes.append(RequestFinish(requestID: id, phase: .decode, at: now))
                }
                if let load = report.decode {
                    model.observe(
                        load, sentAt: now, finishes: report.finished?.count ?? 0,
                        defaultRate: settings.decodeTokensPerSecond, admitted: admitted)
                }
                state.ranks[worker.id] = model
            }
        }
        events.unknownIDs(unknown.admitted, in: "admitted")
        events.unknownIDs(unknown.finished, in: "finished")
        writer.record(finishes: finishes)
    }

    /// A gateway says these requests are done: they leave both balancers' models. Returns the ids neither knew.
    /// The unit each of `ids` was assigned in, for those the phase's book remembers.
    func units(remembering ids: [String], phase: Role) -> [String: String] {
        func look(_ book: Book) -> [String: String] {
            var found: [String: String] = [:]
            for id in ids { if let entry = book[id] { found[id] = entry.unit } }
            return found
        }
        switch phase {
        case .prefill: return prefill.withLock { look($0.book) }
        case .decode: return decode.withLock { look($0.book) }
        }
    }

    /// Marks requests finished; ids assigned in units outside `within` (a scoped gateway's) count as unknown.
    public func finished(_ ids: [String], within: Set<String>? = nil) -> [String] {
        let now = clock.date
        var finishes: [RequestFinish] = []
        var known = Set<String>()
        prefill.withLock { state in
            for id in ids {
                guard let entry = state.book[id], within?.contains(entry.unit) ?? true else { continue }
                known.insert(id)
                state.ranks[entry.worker]?.finished(id)
                if !entry.finished {
                    state.book[id]?.finished = true
                    finishes.append(RequestFinish(requestID: id, phase: .prefill, at: now))
                }
            }
        }
        decode.withLock { state in
            for id in ids {
                guard let entry = state.book[id], within?.contains(entry.unit) ?? true else { continue }
                known.insert(id)
                if !entry.finished {
                    state.ranks[entry.worker]?.finished(
                        id, context: entry.contextTokens, assignedAt: entry.assignedAt, at: now)
                    state.book[id]?.finished = true
                    finishes.append(RequestFinish(requestID: id, phase: .decode, at: now))
                }
            }
        }
        writer.record(finishes: finishes)
        return ids.filter { !known.contains($0) }
    }
}
