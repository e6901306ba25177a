import DequeModule
import FulcrumCore
import Synchronization

/// A prefill unit's engines (`PrefillEngine`) in lock-step. Each step every rank takes up to 16,384 new tokens from
/// its queue, first come first served (long prompts in chunks); a rank's step costs its tokens plus attended pairs / 14,800
/// (DOMAIN §2.4) and the step lasts as long as the costliest rank's, at 9,200 cost units a second per GPU
/// (DeepSeek's ≈9.2k prefill tokens/s per GPU). A prompt whose last chunk ran is done: the gateway takes it on to
/// decode, and the rank's next report lists it as finished.
final class SimulatedPrefillUnit: Sendable {
    static let costPerSecond = 9_200.0

    private struct Rank {
        var engine = PrefillEngine<SimulatedRequest>()
        var health = RankHealth()
    }

    private struct State {
        var ranks: [Rank]
        var unrouted = 0
    }

    let unit: ClusterShape.Unit
    let experts: ExpertRouting
    private let recorder: SimulationRecorder
    private let state: Mutex<State>
    private let prefilled: @Sendable ([SimulatedRequest]) -> Void

    init(
        unit: ClusterShape.Unit, experts: ExpertRouting, recorder: SimulationRecorder,
        prefilled: @escaping @Sendable ([SimulatedRequest]) -> Void
    ) {
        self.unit = unit
        self.experts = experts
        self.recorder = recorder
        self.prefilled = prefilled
        state = Mutex(State(ranks: Array(repeating: Rank(), count: unit.gpus)))
    }

    /// Queues a prompt on a rank; false when the rank is dead (the gateway must send it elsewhere).
    func enqueue(_ request: SimulatedRequest, rank: Int) -> Bool {
        state.withLock {
            guard !$0.ranks[rank].health.dead else { return false }
            $0.ranks[rank].engine.enqueue(
                id: request.id, payload: request, cached: request.cachedTokens, newTokens: request.newTokens)
            return true
        }
    }

    /// Kills a rank; returns the requests it held, which are lost.
    func kill(rank: Int) -> [SimulatedRequest] {
        experts.setServing(rank: rank, false)
        return state.withLock {
            $0.ranks[rank].health.dead = true
            // The prompts of its running step are lost with it, as are those still queued.
            return $0.ranks[rank].engine.kill()
        }
    }

    func slow(rank: Int, by factor: Double) {
        state.withLock { $0.ranks[rank].health.slowdown = factor }
    }

    /// The rank's report: its queue not yet taken into a step, and the prompts finished and taken in since the last
    /// report.
    func report(rank: Int) -> (load: PrefillLoad, finished: [String], admitted: [String]) {
        state.withLock { $0.ranks[rank].engine.report() }
    }

    /// Runs steps until the task is cancelled.
    func run() async {
        let clock = ContinuousClock()
        var lastRouted = clock.now
        while !Task.isCancelled {
            let (costs, tokens) = startStep()
            let live = costs.compactMap { $0 }
            let peak = live.max() ?? 0
            if clock.now - lastRouted > .milliseconds(250) {
                experts.route(tokens: takeUnrouted())
                lastRouted = clock.now
            }
            guard peak > 0 else {
                try? await Task.sleep(for: .milliseconds(10))
                continue
            }
            let seconds = peak / Self.costPerSecond
            try? await Task.sleep(for: .seconds(seconds))
            let done = finishStep(tokens: tokens)
            recorder.step(
                .prefill,
                .init(
                    count: 1, meanCost: live.reduce(0, +) / Double(live.count), maxCost: peak, tokens: tokens,
                    busySeconds: seconds))
            if !done.isEmpty {
                recorder.count { $0.prefilled += done.count }
                prefilled(done)
            }
        }
    }

    private func takeUnrouted() -> Int {
        state.withLock {
            let tokens = $0.unrouted
            $0.unrouted = 0
            return tokens
        }
    }

    /// Takes each live rank's tokens for the step: its cost (nil for a dead rank) and the unit's new tokens.
    private func startStep() -> (costs: [Double?], tokens: Int) {
        state.withLock { state in
            var costs: [Double?] = []
            var total = 0
            for index in state.ranks.indices {
                guard !state.ranks[index].health.dead else {
                    costs.append(nil)
                    continue
                }
                let (cost, taken) = state.ranks[index].engine.startStep(budget: ClusterShape.maxBatchTokens)
                costs.append(cost * state.ranks[index].health.slowdown)
                total += taken
            }
            return (costs, total)
        }
    }

    private func finishStep(tokens: Int) -> [SimulatedRequest] {
        let now = ContinuousClock.now
        return state.withLock { state in
            state.unrouted += tokens
            var done: [SimulatedRequest] = []
            for index in state.ranks.indices where !state.ranks[index].health.dead {
                for prompt in state.ranks[index].engine.finishStep() {
                    var request = prompt.payload
                    request.prefilledAt = now
                    done.append(request)
                }
            }
            return done
        }
    }
}
