/// Fulcrum's prefill core-attention balancer. Units run their ranks in lock-step, so a step lasts as long as its
/// costliest rank; the balancer places each request where it raises the unit's summed per-step maximum least:
///
/// 1. requests go longest first (by attention work), each to a unit, the one whose ranks have the least queued
///    work per token of step budget (the total-load rule across units);
/// 2. inside the unit, onto the rank where its chunks raise Σ over steps of max over ranks of the predicted step
///    cost least (`PrefillRank.profile`; a chunk that fits under the other ranks' costs for that step is free),
///    ties going to the rank whose queue drains first (time to first token), then the lower rank.
public enum PrefillBalancer {
    /// Where one request went: indices into the `units` array and into that unit's ranks.
    public struct Placement: Hashable, Sendable {
        public var unit: Int
        public var rank: Int
    }

    /// Places every request and appends it to its rank's queue. Units with no rank are skipped; every request gets
    /// a placement as long as some unit has a rank (the caller checks), otherwise nil.
    public static func assign(_ requests: [PrefillRequest], units: inout [[PrefillRank]]) -> [Placement?] {
        var envelopes = units.map(envelope)
        // Queued cost per token of step budget, kept as requests land rather than summed again for each.
        var queued = units.map { $0.reduce(0.0) { $0 + $1.profile.reduce(0, +) } }
        let budgets = units.map { Double($0.reduce(0) { $0 + $1.budget }) }
        var result = [Placement?](repeating: nil, count: requests.count)
        let order = requests.indices.sorted {
            let (a, b) = (requests[$0].attentionWork, requests[$1].attentionWork)
            return a != b ? a > b : $0 < $1
        }
        for index in order {
            let request = requests[index]
            guard let unit = units.indices.filter({ !units[$0].isEmpty }).min(by: { queued[$0] / budgets[$0] < queued[$1] / budgets[$1] })
            else { return result }
            let rank = bestRank(for: request, in: units[unit], envelope: envelopes[unit])
            let before = units[unit][rank].profile.reduce(0, +)
            units[unit][rank].append(cached: request.cachedTokens, to: request.newTokens)
            queued[unit] += units[unit][rank].profile.reduce(0, +) - before
            let profile = units[unit][rank].profile
            if envelopes[unit].count < profile.count {
                envelopes[unit].append(contentsOf: repeatElement(0, count: profile.count - envelopes[unit].count))
            }
            for step in profile.indices { envelopes[unit][step] = max(envelopes[unit][step], profile[step]) }
            result[index] = Placement(unit: unit, rank: rank)
        }
        return result
    }

    /// Per step, the costliest rank's predicted cost.
    static func envelope(_ ranks: [PrefillRank]) -> [Double] {
        var envelope: [Double] = []
        for rank in ranks {
            if envelope.count < rank.profile.count {
                envelope.append(contentsOf: repeatElement(0, count: rank.profile.count - envelope.count))
            }
            for (step, cost) in rank.profile.enumerated() { envelope[step] = max(envelope[step], cost) }
        }
        return envelope
    }

    static func bestRank(for request: PrefillRequest, in ranks: [PrefillRank], envelope: [Double]) -> Int {
        var best = (rank: 0, raise: Double.infinity, drains: Double.infinity)
        for (index, rank) in ranks.enumerated() {
            var raise = 0.0
            rank.forEachChunk(cached: request.cachedTokens, to: request.newTokens) { step, cost in
                let current = step < rank.profile.count ? rank.profile[step] : 0
                let ceiling = step < envelope.count ? envelope[step] : 0
                raise += max(0, current + cost - ceiling)
            }
            let drains = Double(rank.queuedTokens + request.newTokens) / Double(rank.budget)
            // Raises within a millionth of a step are ties: rounding must not decide.
            let tolerance = 1e-6 * max(1, raise, best.raise)
            if raise < best.raise - tolerance || (abs(raise - best.raise) <= tolerance && drains < best.drains) {
                best = (index, raise, drains)
            }
        }
        return best.rank
    }
}
