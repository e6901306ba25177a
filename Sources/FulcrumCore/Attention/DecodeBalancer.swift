/// A decode rank as the balancer sees it: KV-cache tokens in use (predicted), running requests and capacity.
public struct DecodeRank: Hashable, Sendable {
    public var kvTokens: Double
    public var requests: Double
    public var capacity: Double
    /// KV held back for requests' future tokens (their `maxNewTokens`), until the rank's report shows them.
    public var reserved: Double
    /// What the balancer sent the rank and has not heard finish, running or waiting for room: its requests and
    /// their contexts. Reports cap KV at the capacity, so only this shows how much a full rank has queued.
    public var committedRequests: Double
    public var committedTokens: Double

    public init(
        kvTokens: Double, requests: Double, capacity: Double, reserved: Double = 0, committedRequests: Double? = nil,
        committedTokens: Double? = nil
    ) {
        self.kvTokens = kvTokens
        self.requests = requests
        self.capacity = capacity
        self.reserved = reserved
        self.committedRequests = committedRequests ?? requests
        self.committedTokens = committedTokens ?? kvTokens
    }

    /// What one step costs this rank: a token per running request plus its attention over the whole cache.
    public var stepCost: Double { StepCost.decodeStep(runningRequests: requests, kvTokens: kvTokens) }
    public var free: Double { capacity - kvTokens - reserved }

    public func fits(_ request: DecodeRequest) -> Bool { Double(request.reservedTokens) <= free }
}

/// Fulcrum's decode core-attention balancer. A decode step lasts as long as the costliest rank of the unit, and a
/// rank's step costs its running requests plus its KV tokens / 14,800, so that one figure balances both KV and
/// request counts. Requests go longest first to the unit with the lowest mean step cost among those where some
/// rank has room, then to the rank whose step cost after taking it is lowest (ties: the emptier cache). A local
/// search then moves this batch's requests off each unit's costliest rank while that lowers it.
///
/// When caches are full, room would decide: placed only where a finish has just freed some, requests would pile
/// onto the ranks that run many short requests (they free room most often) and those would set every step. So when
/// the only ranks with room would go above the water level (the unit's mean step cost plus this request's, or its
/// peak if lower: filling ranks up to the peak whenever room frees keeps the ones that free room most at the peak)
/// while a rank where the request would cost less lacks room for now, the request waits for that rank: held back at a gateway that offers it again (it is then
/// placed wherever room frees first on the right rank), otherwise queued on that rank, whose engine starts it when
/// room frees. A request no rank has room for now is likewise refused to a gateway that offers it again, and
/// queued where it costs least for any other. KV capacity stays a hard limit for what runs: a queued request waits
/// in its engine.
public enum DecodeBalancer {
    public struct Placement: Hashable, Sendable {
        public var unit: Int
        public var rank: Int

        public init(unit: Int, rank: Int) {
            self.unit = unit
            self.rank = rank
        }
    }

    public enum Outcome: Hashable, Sendable {
        case placed(Placement)
        /// No rank of any unit could ever hold it, or (for a caller that may be told to wait) none has room now.
        case noRoom
        /// Only the unit's busiest ranks have room now; a cheaper one lacks room for the moment.
        case heldBack

        public var placement: Placement? {
            if case .placed(let placement) = self { placement } else { nil }
        }
    }

    /// How long a gateway's request may be held back before it is placed wherever there is room. Long: under a
    /// saturated cache requests queue anyway, and a short limit lets the busiest ranks fill up again.
    public static let holdLimit: Double = 30

    /// nil for a request larger than every rank's KV cache; nothing is held back, and a request no rank has room for
    /// now is queued where it costs least.
    public static func assign(_ requests: [DecodeRequest], units: inout [[DecodeRank]]) -> [Placement?] {
        decide(requests, units: &units, mayHold: Array(repeating: false, count: requests.count)).map(\.placement)
    }

    /// Places what it can; `mayHold[i]` lets request i be held back or refused for want of room now (a gateway
    /// that offers such requests again passes false once one has waited long enough, so none waits forever).
    public static func decide(_ requests: [DecodeRequest], units: inout [[DecodeRank]], mayHold: [Bool]) -> [Outcome] {
        var result = [Placement?](repeating: nil, count: requests.count)
        var outcomes = [Outcome](repeating: .noRoom, count: requests.count)
        var totals = units.map { $0.reduce(0.0) { $0 + $1.stepCost } }
        var peaks = units.map { $0.map(\.stepCost).max() ?? 0 }
        let order = requests.indices.sorted {
            let (a, b) = (requests[$0].reservedTokens, requests[$1].reservedTokens)
            return a != b ? a > b : $0 < $1
        }
        for index in order {
            let request = requests[index]
            let mayHold = index < mayHold.count && mayHold[index]
            var chosen: (unit: Int, rank: Int)?
            var bestUnitLoad = Double.infinity
            for unit in units.indices where !units[unit].isEmpty {
                let load = totals[unit] / Double(units[unit].count)
                guard load < bestUnitLoad, let rank = bestRank(for: request, in: units[unit]) else { continue }
                (chosen, bestUnitLoad) = ((unit, rank), load)
            }
            let context = Double(request.contextTokens)
            func cost(_ rank: DecodeRank) -> Double {
                StepCost.decodeStep(runningRequests: rank.requests + 1, kvTokens: rank.kvTokens + context)
            }
            if let (unit, rank) = chosen {
                // Room only where the request would lift its rank above the water level, while a rank where it costs
                // less is full for now: held back for a gateway that offers it again, else queued where committed
                // work is lightest, rather than piled onto the ranks that free room most often.
                let after = cost(units[unit][rank])
                let alone = StepCost.decodeStep(runningRequests: 1, kvTokens: context)
                let level = min(peaks[unit], totals[unit] / Double(units[unit].count) + alone)
                if after > level, let cheaper = cheapestQueue(for: request, in: units[unit]),
                    cost(units[unit][cheaper]) < after
                {
                    if mayHold {
                        outcomes[index] = .heldBack
                        continue
                    }
                    chosen = (unit, committed(request, in: units[unit]) ?? cheaper)
                } else if !mayHold, units[unit].contains(where: { !$0.fits(request) }) {
                    chosen = (unit, committed(request, in: units[unit]) ?? rank)
                }
            } else if !mayHold {
                // No room anywhere: queued where the committed work is lightest, to wait there for room.
                var bestLoad = Double.infinity
                for unit in units.indices where !units[unit].isEmpty {
                    let load = totals[unit] / Double(units[unit].count)
                    guard load < bestLoad, let rank = committed(request, in: units[unit]) else { continue }
                    (chosen, bestLoad) = ((unit, rank), load)
                }
            }
            guard let (unit, rank) = chosen else { continue }
            let before = units[unit][rank].stepCost
            units[unit][rank].kvTokens += context
            units[unit][rank].reserved += Double(request.maxNewTokens ?? 0)
            units[unit][rank].requests += 1
            units[unit][rank].committedTokens += context
            units[unit][rank].committedRequests += 1
            totals[unit] += units[unit][rank].stepCost - before
            peaks[unit] = max(peaks[unit], units[unit][rank].stepCost)
            result[index] = Placement(unit: unit, rank: rank)
        }
        improve(requests, &result, units: &units)
        for (index, placement) in result.enumerated() {
            if let placement { outcomes[index] = .placed(placement) }
        }
        return outcomes
    }

    /// Where a request goes to wait for room when caches are full and no gateway will offer it again: the rank whose
    /// committed work (what it runs and has queued) stays lightest, measured as the larger of its share of the
    /// unit's committed requests and its share of their tokens. A full rank's engine starts its queue in order as
    /// room frees, so evening what each has committed evens what each will run; placing by room alone would feed
    /// the ranks that free room most often.
    static func committed(_ request: DecodeRequest, in ranks: [DecodeRank]) -> Int? {
        let tokens = max(1, ranks.reduce(0) { $0 + $1.committedTokens })
        let requests = max(1, ranks.reduce(0) { $0 + $1.committedRequests })
        let context = Double(request.contextTokens)
        var best: (rank: Int, share: Double)?
        for (index, rank) in ranks.enumerated() where Double(request.reservedTokens) <= rank.capacity {
            let share = max((rank.committedTokens + context) / tokens, (rank.committedRequests + 1) / requests)
            if best.map({ share < $0.share }) ?? true { best = (index, share) }
        }
        return best?.rank
    }

    /// The rank where the request would cost least with or without room for it now, among those it could ever fit
    /// in.
    static func cheapestQueue(for request: DecodeRequest, in ranks: [DecodeRank]) -> Int? {
        let context = Double(request.contextTokens)
        var best: (rank: Int, cost: Double)?
        for (index, rank) in ranks.enumerated() where Double(request.reservedTokens) <= rank.capacity {
            let cost = StepCost.decodeStep(runningRequests: rank.requests + 1, kvTokens: rank.kvTokens + context)
            if best.map({ cost < $0.cost }) ?? true { best = (index, cost) }
        }
        return best?.rank
    }

    static func bestRank(for request: DecodeRequest, in ranks: [DecodeRank]) -> Int? {
        var best: (rank: Int, cost: Double, fill: Double)?
        let context = Double(request.contextTokens)
        for (index, rank) in ranks.enumerated() where rank.fits(request) {
            let cost = StepCost.decodeStep(runningRequests: rank.requests + 1, kvTokens: rank.kvTokens + context)
            let fill = (rank.kvTokens + context) / rank.capacity
            if let best, cost > best.cost || (cost == best.cost && fill >= best.fill) { continue }
            best = (index, cost, fill)
        }
        return best?.rank
    }

    /// Moves requests of this batch off each unit's costliest rank to its cheapest one while that lowers the
    /// unit's maximum; bounded, as the greedy pass is already close.
    static func improve(_ requests: [DecodeRequest], _ result: inout [Placement?], units: inout [[DecodeRank]]) {
        let touched = Set(result.compactMap { $0?.unit })
        for unit in touched.sorted() where units[unit].count > 1 {
            for _ in 0..<64 {
                guard let hottest = units[unit].indices.max(by: { units[unit][$0].stepCost < units[unit][$1].stepCost }),
                    let coolest = units[unit].indices.min(by: { units[unit][$0].stepCost < units[unit][$1].stepCost })
                else { break }
                let peak = units[unit][hottest].stepCost
                var move: (request: Int, peak: Double)?
                for (index, placement) in result.enumerated() where placement == Placement(unit: unit, rank: hottest) {
                    let request = requests[index]
                    guard units[unit][coolest].fits(request) else { continue }
                    let context = Double(request.contextTokens)
                    let target = StepCost.decodeStep(
                        runningRequests: units[unit][coolest].requests + 1, kvTokens: units[unit][coolest].kvTokens + context)
                    let source = StepCost.decodeStep(
                        runningRequests: units[unit][hottest].requests - 1, kvTokens: units[unit][hottest].kvTokens - context)
                    let newPeak = max(target, source)
                    if newPeak < peak - 1e-9, newPeak < move?.peak ?? .infinity { move = (index, newPeak) }
                }
                guard let (index, _) = move else { break }
                let context = Double(requests[index].contextTokens)
                let reserve = Double(requests[index].maxNewTokens ?? 0)
                units[unit][hottest].kvTokens -= context
                units[unit][hottest].reserved -= reserve
                units[unit][hottest].requests -= 1
                units[unit][hottest].committedTokens -= context
                units[unit][hottest].committedRequests -= 1
                units[unit][coolest].committedTokens += context
                units[unit][coolest].committedRequests += 1
                units[unit][coolest].kvTokens += context
                units[unit][coolest].reserved += reserve
                units[unit][coolest].requests += 1
                result[index] = Placement(unit: unit, rank: coolest)
            }
        }
    }
}


