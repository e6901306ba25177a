import FulcrumCore
import FulcrumSimulator
import Foundation

/// The policies `fulcrum bench balance` compares, in table order: what peers ship, then Fulcrum and the
/// clairvoyant reference.
enum BalancePolicy: String, CaseIterable, Sendable {
    case roundRobin = "round-robin"
    case leastTokens = "least-tokens"
    case leastRequests = "least-reqs"
    case powerOfTwo = "power-of-2"
    /// SGLang's data-parallel controller, `total_tokens`: least (tokens, requests), bumped on each dispatch.
    case sglangTokens = "sgl-tokens"
    /// SGLang's `total_requests`: least running + waiting requests, bumped on each dispatch.
    case sglangRequests = "sgl-reqs"
    /// vLLM's DP client: max(in flight, waiting + running) + waiting x 6 x max(0, KV use − 0.5).
    case vllm
    /// Least max(share of the unit's tokens, share of its requests), bumped on each dispatch.
    case greedy
    case fulcrum
    case clairvoyant

    static let baselines: [BalancePolicy] = allCases.filter { $0 != .fulcrum && $0 != .clairvoyant }
}

/// A worker's report as a router receives it; `admitted` is nil when the control loop leaves it out.
struct PrefillReport: Sendable {
    var load: PrefillLoad
    var finished: [String]
    var admitted: [String]?
}

struct DecodeReport: Sendable {
    var load: DecodeLoad
    var finished: [String]
    var admitted: [String]?
    /// Of `load.runningRequests`, those waiting for KV room: what vLLM's engines publish, which its policy reads.
    var waiting: Int
}

/// What a prefill router sees and decides. It learns about ranks only through reports, except the clairvoyant
/// reference, which reads the engines.
protocol PrefillRouting {
    mutating func observe(rank: Int, report: PrefillReport, sentAt: Double)
    /// A rank for each request of a gateway batch, in batch order.
    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine<Int>]) -> [Int]
}

/// What a decode router sees and decides.
protocol DecodeRouting {
    mutating func observe(rank: Int, report: DecodeReport, sentAt: Double)
    /// A rank for each request, or nil: refused (no room, or held back where `allowHold`), the gateway offers it
    /// again.
    mutating func route(_ batch: [DecodeRequest], now: Double, allowHold: Bool, engines: [DecodeEngine<Int>]) -> [Int?]
}

/// The models take dates; the simulation counts seconds from the epoch.
func simulatedDate(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

/// The baselines, as their projects ship them: each knows the ranks' last reports, and some count what they sent
/// since.
struct CountingRouter: PrefillRouting, DecodeRouting {
    let rule: BalancePolicy
    var tokens: [Double]
    var requests: [Double]
    var waiting: [Double]
    var kvUse: [Double]
    /// vLLM's exact count of its requests not finished, per rank.
    var inFlight: [Int]
    var rankOf: [String: Int] = [:]
    var cumCount: [Double] = Array(repeating: 0, count: 144)
    var next = 0
    var random: SeededGenerator

    init(rule: BalancePolicy, ranks: Int, seed: UInt64) {
        self.rule = rule
        tokens = Array(repeating: 0, count: ranks)
        requests = tokens
        waiting = tokens
        kvUse = tokens
        inFlight = Array(repeating: 0, count: ranks)
        random = SeededGenerator(seed: seed)
    }

    /// The rank minimising `score`; ties go to the first from a start that turns with each pick, or to the lowest
    /// index where the project breaks ties that way (SGLang).
    private static func least(count: Int, from start: Int, _ score: (Int) -> Double) -> Int {
        var best = start
        var bestScore = score(start)
        for offset in 1..<count {
            let rank = (start + offset) % count
            let value = score(rank)
            if value < bestScore { (best, bestScore) = (rank, value) }
        }
        return best
    }

    mutating func pick(tokens added: Double) -> Int {
        let count = tokens.count
        let turn = next
        next = (next + 1) % count
        let (tokens, requests, waiting, kvUse, inFlight) = (tokens, requests, waiting, kvUse, inFlight)
        func least(rotating: Bool, _ score: (Int) -> Double) -> Int {
            Self.least(count: count, from: rotating ? turn : 0, score)
        }
        let rank: Int
        switch rule {
        case .leastTokens: rank = least(rotating: true) { tokens[$0] }
        case .leastRequests: rank = least(rotating: true) { requests[$0] }
        case .powerOfTwo:
            let first = Int.random(in: 0..<count, using: &random)
            var second = Int.random(in: 0..<(count - 1), using: &random)
            if second >= first { second += 1 }
            rank = tokens[second] < tokens[first] ? second : first
        case .sglangTokens:
            // Lexicographic (tokens, requests): requests only break exact ties.
            let top = (requests.max() ?? 0) + 1
            rank = least(rotating: false) { tokens[$0] * top + requests[$0] }
        case .sglangRequests: rank = least(rotating: false) { requests[$0] }
        case .vllm:
            rank = least(rotating: true) { rank in
                let score = max(Double(inFlight[rank]), waiting[rank] + requests[rank])
                return waiting[rank] > 0 ? score + waiting[rank] * 6 * max(0, kvUse[rank] - 0.5) : score
            }
        case .greedy:
            let (allTokens, allRequests) = (max(1, tokens.reduce(0, +)), max(1, requests.reduce(0, +)))
            rank = least(rotating: true) { max(tokens[$0] / allTokens, requests[$0] / allRequests) }
        case .roundRobin, .fulcrum, .clairvoyant: rank = turn
        }
        switch rule {
        case .sglangTokens, .greedy:
            self.tokens[rank] += added
            self.requests[rank] += 1
        case .sglangRequests: self.requests[rank] += 1
        case .vllm:
            self.waiting[rank] += 1
            self.inFlight[rank] += 1
        default: break
        }
        return rank
    }

    private mutating func finished(_ ids: [String]) {
        guard rule == .vllm else { return }
        for id in ids {
            if let rank = rankOf.removeValue(forKey: id) { inFlight[rank] -= 1 }
        }
    }

    mutating func observe(rank: Int, report: PrefillReport, sentAt: Double) {
        tokens[rank] = Double(report.load.queuedTokens)
        // vLLM counts them waiting; the others count requests, and for a prefill rank all of them wait.
        requests[rank] = rule == .vllm ? 0 : Double(report.load.queuedRequests)
        waiting[rank] = Double(report.load.queuedRequests)
        finished(report.finished)
    }

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine<Int>]) -> [Int] {
        batch.map { request in
            let rank = pick(tokens: Double(request.inputTokens))
            if rule == .vllm { rankOf[request.id] = rank }
            return rank
        }
    }

    mutating func observe(rank: Int, report: DecodeReport, sentAt: Double) {
        let load = report.load
        tokens[rank] = Double(load.kvTokensUsed)
        waiting[rank] = Double(report.waiting)
        requests[rank] = Double(rule == .vllm ? load.runningRequests - report.waiting : load.runningRequests)
        kvUse[rank] = load.kvTokensCapacity > 0 ? Double(load.kvTokensUsed) / Double(load.kvTokensCapacity) : 0
        finished(report.finished)
    }

    mutating func route(_ batch: [DecodeRequest], now: Double, allowHold: Bool, engines: [DecodeEngine<Int>]) -> [Int?] {
        batch.map { request in
            let rank = pick(tokens: Double(request.contextTokens))
            if rule == .vllm { rankOf[request.id] = rank }
            return rank
        }
    }
}

/// Fulcrum as the service runs it: per rank a `PrefillRankModel` (last report + own assignments − finishes), each
/// batch placed by `PrefillBalancer` on one unit.
struct FulcrumPrefillRouter: PrefillRouting {
    var models: [PrefillRankModel]
    /// As the service keeps it: the rank each id went to, so a retried id gets its first answer and a finish
    /// reaches only the rank the request was sent to.
    var book = AssignmentBook<Int, Double>()
    /// `model.rank(budget:)`, kept until the model changes: most ranks are untouched between two batches.
    var views: [PrefillRank?]
    let budget: Int

    init(ranks: Int, budget: Int) {
        models = (0..<ranks).map { _ in PrefillRankModel(epoch: 0) }
        views = Array(repeating: nil, count: ranks)
        self.budget = budget
    }

    mutating func observe(rank: Int, report: PrefillReport, sentAt: Double) {
        // As the service does: the finished ids leave first, then the figures replace the base.
        for id in report.finished where book[id] == rank { models[rank].finished(id) }
        models[rank].observe(
            report.load, sentAt: simulatedDate(sentAt), finishes: report.finished.count,
            admitted: report.admitted.map(Set.init))
        views[rank] = nil
    }

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine<Int>]) -> [Int] {
        var (answers, fresh) = book.lookup(batch.map(\.id))
        var units = [models.indices.map { rank in views[rank] ?? models[rank].rank(budget: budget) }]
        let requests = fresh.map { batch[$0] }
        for (index, placement) in zip(fresh, PrefillBalancer.assign(requests, units: &units)) {
            let rank = placement?.rank ?? 0  // nil only for a unit without ranks
            models[rank].assigned(batch[index], at: simulatedDate(now))
            views[rank] = nil
            book.remember(batch[index].id, rank, at: now)
            answers[index] = rank
        }
        book.expire(before: now - BalanceRuns.memory, limit: BalanceRuns.memoryLimit)
        return answers.map { $0 ?? 0 }
    }
}

/// The same balancer fed the engines' exact queues at the moment of the batch: no telemetry lag, no model error.
struct ClairvoyantPrefillRouter: PrefillRouting {
    var views: [(version: Int, rank: PrefillRank)?]
    let budget: Int

    init(ranks: Int, budget: Int) {
        views = Array(repeating: nil, count: ranks)
        self.budget = budget
    }

    mutating func observe(rank: Int, report: PrefillReport, sentAt: Double) {}

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine<Int>]) -> [Int] {
        var units = [
            engines.indices.map { rank -> PrefillRank in
                if let view = views[rank], view.version == engines[rank].version { return view.rank }
                let view = engines[rank].rank(budget: budget)
                views[rank] = (engines[rank].version, view)
                return view
            }
        ]
        return PrefillBalancer.assign(batch, units: &units).map { $0?.rank ?? 0 }
    }
}

/// Fulcrum as the service runs it: per rank a `DecodeRankModel`, each batch placed by `DecodeBalancer`.
struct FulcrumDecodeRouter: DecodeRouting {
    /// The model's growth rate before a rank reports one: DeepSeek's ~20 tokens/s per request.
    static let defaultRate = 20.0
    var models: [DecodeRankModel]
    let capacity: Int
    var holding: DecodeHolds
    var book = AssignmentBook<Int, Double>()

    init(ranks: Int, capacity: Int, holding: DecodeHolds) {
        models = (0..<ranks).map { _ in DecodeRankModel(epoch: 0, rate: Self.defaultRate) }
        self.capacity = capacity
        self.holding = holding
    }

    mutating func observe(rank: Int, report: DecodeReport, sentAt: Double) {
        // As the service does: a worker's own finished list is already out of its report's figures.
        for id in report.finished where book[id] == rank { models[rank].finishedInReport(id) }
        models[rank].observe(
            report.load, sentAt: simulatedDate(sentAt), finishes: report.finished.count, defaultRate: Self.defaultRate,
            admitted: report.admitted.map(Set.init))
    }

    mutating func route(_ batch: [DecodeRequest], now: Double, allowHold: Bool, engines: [DecodeEngine<Int>]) -> [Int?] {
        let date = simulatedDate(now)
        var (answers, fresh) = book.lookup(batch.map(\.id))
        let requests = fresh.map { batch[$0] }
        var units = [models.map { $0.rank(now: date, capacity: capacity) }]
        let outcomes = DecodeBalancer.decide(
            requests, units: &units,
            mayHold: holding.mayHold(
                requests, allowed: allowHold, now: now,
                stepSeconds: Double(models.count) / max(1e-9, models.reduce(0) { $0 + $1.rate })))
        holding.record(requests, outcomes, now: now)
        for (index, outcome) in zip(fresh, outcomes) {
            guard let rank = outcome.placement?.rank else { continue }
            models[rank].assigned(batch[index], at: date)
            book.remember(batch[index].id, rank, at: now)
            answers[index] = rank
        }
        book.expire(before: now - BalanceRuns.memory, limit: BalanceRuns.memoryLimit)
        return answers
    }
}

/// The same balancer fed the engines' exact KV and request counts (running and waiting for room).
struct ClairvoyantDecodeRouter: DecodeRouting {
    let capacity: Int
    var holding: DecodeHolds

    mutating func observe(rank: Int, report: DecodeReport, sentAt: Double) {}

    mutating func route(_ batch: [DecodeRequest], now: Double, allowHold: Bool, engines: [DecodeEngine<Int>]) -> [Int?] {
        var units = [
            engines.map {
                DecodeRank(
                    kvTokens: Double($0.committedTokens), requests: Double($0.requests), capacity: Double(capacity))
            }
        ]
        let outcomes = DecodeBalancer.decide(
            batch, units: &units,
            mayHold: holding.mayHold(batch, allowed: allowHold, now: now, stepSeconds: DecodeSimulation.stepSeconds(engines)))
        holding.record(batch, outcomes, now: now)
        return outcomes.map { $0.placement?.rank }
    }
}
