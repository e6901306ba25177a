import DequeModule
import FulcrumCore
import Synchronization

/// A decode unit's engines (`DecodeEngine`) in lock-step. Each step every running request makes one token; a rank's step costs its
/// running requests plus KV tokens attended / 14,800 (DOMAIN §2.4), and the step lasts as long as the costliest
/// rank's, at least 1/22 s. The rate, 2,472 cost units a second, puts a rank at DeepSeek's mean load (88 requests
/// of 4,989 KV tokens: 14.8k output tokens/s per node) at 21 tokens/s per request, its published 20-22. A request
/// waits on its rank until its context fits in the rank's KV cache.
final class SimulatedDecodeUnit: Sendable {
    static let costPerSecond = 2_472.0
    static let shortestStep = 1.0 / 22

    private struct Rank {
        var engine = DecodeEngine<SimulatedRequest>(capacity: ClusterShape.kvTokens)
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

    init(unit: ClusterShape.Unit, experts: ExpertRouting, recorder: SimulationRecorder) {
        self.unit = unit
        self.experts = experts
        self.recorder = recorder
        state = Mutex(State(ranks: Array(repeating: Rank(), count: unit.gpus)))
    }

    func enqueue(_ request: SimulatedRequest, rank: Int) -> Bool {
        state.withLock {
            guard !$0.ranks[rank].health.dead else { return false }
            $0.ranks[rank].engine.enqueue(
                id: request.id, payload: request, context: request.inputTokens, outputTokens: request.outputTokens)
            return true
        }
    }

    func kill(rank: Int) -> [SimulatedRequest] {
        experts.setServing(rank: rank, false)
        return state.withLock {
            $0.ranks[rank].health.dead = true
            return $0.ranks[rank].engine.kill()
        }
    }

    func slow(rank: Int, by factor: Double) {
        state.withLock { $0.ranks[rank].health.slowdown = factor }
    }

    /// The rank's report: KV in use (running contexts plus those waiting for room, at most the capacity), the
    /// requests it holds, its output rate, and the requests finished and taken in since the last report.
    func report(rank: Int) -> (load: DecodeLoad, finished: [String], admitted: [String]) {
        state.withLock { $0.ranks[rank].engine.report() }
    }

    func run() async {
        let clock = ContinuousClock()
        var lastRouted = clock.now
        while !Task.isCancelled {
            let costs = startStep()
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
            let seconds = max(Self.shortestStep, peak / Self.costPerSecond)
            try? await Task.sleep(for: .seconds(seconds))
            let (tokens, done) = finishStep(seconds: seconds)
            recorder.step(
                .decode,
                .init(
                    count: 1, meanCost: live.reduce(0, +) / Double(live.count), maxCost: peak, tokens: tokens,
                    busySeconds: seconds))
            let now = ContinuousClock.now
            for request in done {
                recorder.finished(
                    request.id, ttft: ((request.prefilledAt ?? now) - request.arrivedAt).seconds,
                    endToEnd: (now - request.arrivedAt).seconds)
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

    /// Admits waiting requests that fit and returns each live rank's step cost (nil for a dead rank).
    private func startStep() -> [Double?] {
        state.withLock { state in
            state.ranks.indices.map { index -> Double? in
                guard !state.ranks[index].health.dead else { return nil }
                return state.ranks[index].engine.startStep() * state.ranks[index].health.slowdown
            }
        }
    }

    /// Every running request made a token: returns the tokens made and the requests that finished.
    private func finishStep(seconds: Double) -> (tokens: Int, done: [SimulatedRequest]) {
        state.withLock { state in
            var tokens = 0
            var done: [SimulatedRequest] = []
            for index in state.ranks.indices where !state.ranks[index].health.dead {
                let (made, finished) = state.ranks[index].engine.finishStep(seconds: seconds)
                tokens += made
                done += finished.map(\.payload)
            }
            state.unrouted += tokens
            return (tokens, done)
        }
    }
}
