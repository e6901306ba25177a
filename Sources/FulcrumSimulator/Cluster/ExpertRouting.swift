import Synchronization

/// Where a unit's routed tokens land: each token picks 8 experts by the unit's current workload, and each expert's
/// picks split evenly over its replicas on the ranks that serve (alive), as each rank's applied placement says.
/// Accumulates per-slot counts between a worker's reports (its `experts.slotTokens`) and measures the unit's expert
/// balance the way EPLB does: Σ over layers of the busiest GPU's load / Σ of the mean GPU load.
final class ExpertRouting: Sendable {
    static let expertsPerToken = 8.0

    struct Measure: Sendable {
        var balancedness: Double
        /// Share of routed picks whose expert has no replica on a serving rank.
        var unserved: Double
    }

    private struct State {
        var share: [[Double]]
        var workload: String
        /// [rank][layer][localSlot] = logical expert, as the rank last applied.
        var applied: [[[Int]]]
        var version: [Int]
        var serving: [Bool]
        /// [rank][layer][localSlot]: fraction of the layer's picks landing on the slot; nil when stale.
        var slotShare: [[[Double]]]?
        var measure = Measure(balancedness: 1, unserved: 0)
        /// Picks counted since the rank's last report: [rank][layer][localSlot].
        var pending: [[[Double]]]
    }

    let unit: ClusterShape.Unit
    private let state: Mutex<State>

    init(unit: ClusterShape.Unit, workload: ExpertWorkloads.Workload) {
        self.unit = unit
        let perGpu = unit.slotsPerGpu
        // Version 1, as an engine starts: slot i holds expert i mod routedExperts.
        let initial = (0..<unit.gpus).map { rank in
            Array(repeating: (0..<perGpu).map { (rank * perGpu + $0) % ClusterShape.routedExperts }, count: ClusterShape.moeLayers)
        }
        state = Mutex(
            State(
                share: workload.share, workload: workload.name, applied: initial,
                version: Array(repeating: 1, count: unit.gpus), serving: Array(repeating: true, count: unit.gpus),
                slotShare: nil,
                pending: Array(
                    repeating: Array(repeating: Array(repeating: 0, count: perGpu), count: ClusterShape.moeLayers),
                    count: unit.gpus)))
    }

    func use(_ workload: ExpertWorkloads.Workload) {
        state.withLock {
            guard $0.workload != workload.name else { return }
            $0.share = workload.share
            $0.workload = workload.name
            $0.slotShare = nil
        }
    }

    /// A rank applied a placement version; returns how many of its slots changed expert.
    func apply(rank: Int, version: Int, slots: [[Int]]) -> Int {
        state.withLock {
            let before = $0.applied[rank]
            var moved = 0
            for (layer, row) in slots.enumerated() where layer < before.count {
                for (slot, expert) in row.enumerated() where slot < before[layer].count && before[layer][slot] != expert {
                    moved += 1
                }
            }
            $0.applied[rank] = slots
            $0.version[rank] = version
            $0.slotShare = nil
            return moved
        }
    }

    func setServing(rank: Int, _ serving: Bool) {
        state.withLock {
            $0.serving[rank] = serving
            $0.slotShare = nil
        }
    }

    func versions() -> [Int] { state.withLock { $0.version } }

    /// Routes `tokens` tokens through the unit's experts.
    func route(tokens: Int) {
        guard tokens > 0 else { return }
        state.withLock { state in
            Self.refresh(&state, unit: unit)
            guard let shares = state.slotShare else { return }
            let picks = Double(tokens) * Self.expertsPerToken
            for rank in shares.indices where state.serving[rank] {
                for layer in shares[rank].indices {
                    for slot in shares[rank][layer].indices {
                        state.pending[rank][layer][slot] += picks * shares[rank][layer][slot]
                    }
                }
            }
        }
    }

    /// The whole tokens counted since the rank's last report; fractions carry over to the next one, so no pick is
    /// lost to rounding however small the reports.
    func takeSlotTokens(rank: Int) -> [[Int]] {
        state.withLock { state in
            state.pending[rank].indices.map { layer in
                state.pending[rank][layer].indices.map { slot in
                    let whole = state.pending[rank][layer][slot].rounded(.down)
                    state.pending[rank][layer][slot] -= whole
                    return Int(whole)
                }
            }
        }
    }

    func measure() -> Measure {
        state.withLock { state in
            Self.refresh(&state, unit: unit)
            return state.measure
        }
    }

    private static func refresh(_ state: inout State, unit: ClusterShape.Unit) {
        guard state.slotShare == nil else { return }
        let perGpu = unit.slotsPerGpu
        var shares = Array(
            repeating: Array(repeating: Array(repeating: 0.0, count: perGpu), count: ClusterShape.moeLayers),
            count: unit.gpus)
        var peak = 0.0
        var mean = 0.0
        var unserved = 0.0
        let servingRanks = state.serving.indices.filter { state.serving[$0] }
        for layer in 0..<ClusterShape.moeLayers {
            var replicas = Array(repeating: 0, count: ClusterShape.routedExperts)
            for rank in servingRanks {
                for expert in state.applied[rank][layer] where expert < replicas.count { replicas[expert] += 1 }
            }
            var layerPeak = 0.0
            var layerTotal = 0.0
            for rank in servingRanks {
                var load = 0.0
                for (slot, expert) in state.applied[rank][layer].enumerated() where expert < replicas.count {
                    let share = state.share[layer][expert] / Double(replicas[expert])
                    shares[rank][layer][slot] = share
                    load += share
                }
                layerPeak = max(layerPeak, load)
                layerTotal += load
            }
            for expert in replicas.indices where replicas[expert] == 0 { unserved += state.share[layer][expert] }
            peak += layerPeak
            mean += servingRanks.isEmpty ? 0 : layerTotal / Double(servingRanks.count)
        }
        state.slotShare = shares
        state.measure = Measure(
            balancedness: mean > 0 ? peak / mean : 1, unserved: unserved / Double(ClusterShape.moeLayers))
    }
}
