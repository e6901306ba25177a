import FulcrumSimulator
import FulcrumCore
import Foundation

/// The policies `fulcrum bench balance` compares, in table order.
enum BalancePolicy: String, CaseIterable, Sendable {
    case roundRobin = "round-robin"
    case leastTokens = "least-tokens"
    case powerOfTwo = "power-of-two"
    case fulcrum
    case clairvoyant
}

/// What a prefill router sees and decides. It learns about ranks only through reports, except the clairvoyant
/// reference, which reads the engines.
protocol PrefillRouting {
    /// A rank's report sent at `sentAt`, with the ids whose prefill finished since its previous report.
    mutating func observe(rank: Int, load: PrefillLoad, finished: [String], sentAt: Double)
    /// A rank for each request of a gateway batch, in batch order.
    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine]) -> [Int]
}

/// What a decode router sees and decides.
protocol DecodeRouting {
    mutating func observe(rank: Int, load: DecodeLoad, finished: [FinishedDecode], sentAt: Double)
    /// A rank for each request, or nil: no rank has room, the gateway holds it and offers it again.
    mutating func route(_ batch: [DecodeRequest], now: Double, engines: [DecodeEngine]) -> [Int?]
}

/// A decode request that left its rank, as its worker's report names it.
struct FinishedDecode: Sendable {
    var id: String
    var contextTokens: Int
    var assignedAt: Double
}

/// The models take dates; the simulation counts seconds from the epoch.
func simulatedDate(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

/// The baselines, which know one number per rank from its last report: queued tokens (prefill) or KV tokens
/// (decode). None of them counts what it sent since that report.
struct TokenCountRouter: PrefillRouting, DecodeRouting {
    let rule: BalancePolicy
    var reported: [Int]
    var next = 0
    var random: SeededGenerator

    init(rule: BalancePolicy, ranks: Int, seed: UInt64) {
        self.rule = rule
        reported = Array(repeating: 0, count: ranks)
        random = SeededGenerator(seed: seed)
    }

    mutating func pick() -> Int {
        let count = reported.count
        switch rule {
        case .leastTokens:
            // SGLang's dp_min_token. Equal counts (idle ranks) are taken in turn rather than always the lowest
            // index, which would only handicap the baseline.
            let start = next
            next = (next + 1) % count
            var best = start
            for offset in 1..<count where reported[(start + offset) % count] < reported[best] {
                best = (start + offset) % count
            }
            return best
        case .powerOfTwo:
            let first = Int.random(in: 0..<count, using: &random)
            var second = Int.random(in: 0..<(count - 1), using: &random)
            if second >= first { second += 1 }
            return reported[second] < reported[first] ? second : first
        case .roundRobin, .fulcrum, .clairvoyant:
            defer { next = (next + 1) % count }
            return next
        }
    }

    mutating func observe(rank: Int, load: PrefillLoad, finished: [String], sentAt: Double) {
        reported[rank] = load.queuedTokens
    }

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine]) -> [Int] {
        batch.map { _ in pick() }
    }

    mutating func observe(rank: Int, load: DecodeLoad, finished: [FinishedDecode], sentAt: Double) {
        reported[rank] = load.kvTokensUsed
    }

    mutating func route(_ batch: [DecodeRequest], now: Double, engines: [DecodeEngine]) -> [Int?] {
        batch.map { _ in pick() }
    }
}

/// Fulcrum as the service runs it: per rank a `PrefillRankModel` (last report + own assignments − finishes), each
/// batch placed by `PrefillBalancer` on one unit.
struct FulcrumPrefillRouter: PrefillRouting {
    var models: [PrefillRankModel]
    /// `model.rank(budget:)`, kept until the model changes: most ranks are untouched between two batches.
    var views: [PrefillRank?]
    let budget: Int

    init(ranks: Int, budget: Int) {
        models = (0..<ranks).map { _ in PrefillRankModel(epoch: 0) }
        views = Array(repeating: nil, count: ranks)
        self.budget = budget
    }

    mutating func observe(rank: Int, load: PrefillLoad, finished: [String], sentAt: Double) {
        for id in finished { models[rank].finished(id) }
        models[rank].observe(load, sentAt: simulatedDate(sentAt), settle: 0)
        views[rank] = nil
    }

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine]) -> [Int] {
        var units = [models.indices.map { rank in views[rank] ?? models[rank].rank(budget: budget) }]
        let placed = PrefillBalancer.assign(batch, units: &units)
        return zip(batch, placed).map { request, placement in
            let rank = placement?.rank ?? 0  // nil only for a unit without ranks
            // As the service does: assignments recorded in batch order, the order the gateway forwards them in.
            models[rank].assigned(request, at: simulatedDate(now))
            views[rank] = nil
            return rank
        }
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

    mutating func observe(rank: Int, load: PrefillLoad, finished: [String], sentAt: Double) {}

    mutating func route(_ batch: [PrefillRequest], now: Double, engines: [PrefillEngine]) -> [Int] {
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

    init(ranks: Int, capacity: Int, holding: DecodeHolds) {
        models = (0..<ranks).map { _ in DecodeRankModel(epoch: 0, rate: Self.defaultRate) }
        self.capacity = capacity
        self.holding = holding
    }

    mutating func observe(rank: Int, load: DecodeLoad, finished: [FinishedDecode], sentAt: Double) {
        let now = simulatedDate(sentAt)
        // As the service does: a worker's own finished list is already out of its report's figures.
        for request in finished { models[rank].finishedInReport(request.id) }
        models[rank].observe(load, sentAt: now, settle: 0, defaultRate: Self.defaultRate)
    }

    var holding: DecodeHolds

    mutating func route(_ batch: [DecodeRequest], now: Double, engines: [DecodeEngine]) -> [Int?] {
        let date = simulatedDate(now)
        var units = [models.map { $0.rank(now: date, capacity: capacity) }]
        let outcomes = DecodeBalancer.decide(batch, units: &units, mayHold: holding.mayHold(batch, now: now))
        holding.record(batch, outcomes, now: now)
        return zip(batch, outcomes).map { request, outcome in
            guard let rank = outcome.placement?.rank else { return nil }
            models[rank].assigned(request, at: date)
            return rank
        }
    }
}

/// The same balancer fed the engines' exact KV and request counts (running and waiting for room).
struct ClairvoyantDecodeRouter: DecodeRouting {
    let capacity: Int
    var holding: DecodeHolds

    mutating func observe(rank: Int, load: DecodeLoad, finished: [FinishedDecode], sentAt: Double) {}

    mutating func route(_ batch: [DecodeRequest], now: Double, engines: [DecodeEngine]) -> [Int?] {
        var units = [
            engines.map {
                DecodeRank(
                    kvTokens: Double($0.committedTokens), requests: Double($0.requests), capacity: Double(capacity))
            }
        ]
        let outcomes = DecodeBalancer.decide(batch, units: &units, mayHold: holding.mayHold(batch, now: now))
        holding.record(batch, outcomes, now: now)
        return outcomes.map { $0.placement?.rank }
    }
}
