import DequeModule
import FulcrumCore
import Synchronization

/// A decode unit's engines in lock-step. Each step every running request makes one token; a rank's step costs its
/// running requests plus KV tokens attended / 14,800 (DOMAIN §2.4), and the step lasts as long as the costliest
/// rank's, at least 1/22 s. The rate, 2,472 cost units a second, puts a rank at DeepSeek's mean load (88 requests
/// of 4,989 KV tokens: 14.8k output tokens/s per node) at 21 tokens/s per request, its published 20-22. A request
/// waits on its rank until its context fits in the rank's KV cache.
final class SimulatedDecodeUnit: Sendable {
    static let costPerSecond = 2_472.0
    static let shortestStep = 1.0 / 22

    private struct Running {
        var request: SimulatedRequest
        var context: Int
        var remaining: Int
    }

    private struct Rank {
        var running: [Running] = []
        var waiting: Deque<Running> = []
        var kvTokens = 0
        var finished: [String] = []
        /// Taken in since the last report (the report's `admitted`).
        var admitted: [String] = []
        var tokensPerSecond: Double?
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
            $0.ranks[rank].waiting.append(
                Running(request: request, context: request.inputTokens, remaining: request.outputTokens))
            $0.ranks[rank].admitted.append(request.id)
            return true
        }
    }

    func kill(rank: Int) -> [SimulatedRequest] {
        experts.setServing(rank: rank, false)
        return state.withLock {
            $0.ranks[rank].health.dead = true
            let lost = ($0.ranks[rank].running + $0.ranks[rank].waiting).map(\.request)
            $0.ranks[rank].running.removeAll()
            $0.ranks[rank].waiting.removeAll()
            $0.ranks[rank].kvTokens = 0
            return lost
        }
    }

    func slow(rank: Int, by factor: Double) {
        state.withLock { $0.ranks[rank].health.slowdown = factor }
    }

    /// The rank's report: KV in use (running contexts plus those waiting for room, at most the capacity), the
    /// requests it holds, its output rate, and the requests finished and taken in since the last report.
    func report(rank: Int) -> (load: DecodeLoad, finished: [String], admitted: [String]) {
        state.withLock {
            let held = $0.ranks[rank]
            let waitingTokens = held.waiting.reduce(0) { $0 + $1.context }
            $0.ranks[rank].finished.removeAll(keepingCapacity: true)
            $0.ranks[rank].admitted.removeAll(keepingCapacity: true)
            return (
                DecodeLoad(
                    kvTokensUsed: min(ClusterShape.kvTokens, held.kvTokens + waitingTokens),
                    kvTokensCapacity: ClusterShape.kvTokens, runningRequests: held.running.count + held.waiting.count,
                    tokensPerSecond: held.tokensPerSecond),
                held.finished, held.admitted
            )
        }
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
                while let next = state.ranks[index].waiting.first,
                    state.ranks[index].kvTokens + next.context <= ClusterShape.kvTokens
                {
                    state.ranks[index].kvTokens += next.context
                    state.ranks[index].running.append(next)
                    state.ranks[index].waiting.removeFirst()
                }
                let rank = state.ranks[index]
                return StepCost.decodeStep(runningRequests: Double(rank.running.count), kvTokens: Double(rank.kvTokens))
                    * rank.health.slowdown
            }
        }
    }

    /// Every running request made a token: returns the tokens made and the requests that finished.
    private func finishStep(seconds: Double) -> (tokens: Int, done: [SimulatedRequest]) {
        state.withLock { state in
            var tokens = 0
            var done: [SimulatedRequest] = []
            for index in state.ranks.indices where !state.ranks[index].health.dead {
                let made = state.ranks[index].running.count
                guard made > 0 else { continue }
                tokens += made
                state.ranks[index].tokensPerSecond = Double(made) / seconds
                var kept: [Running] = []
                kept.reserveCapacity(made)
                for var running in state.ranks[index].running {
                    running.context += 1
                    running.remaining -= 1
                    state.ranks[index].kvTokens += 1
                    if running.remaining > 0 {
                        kept.append(running)
                    } else {
                        state.ranks[index].kvTokens -= running.context
                        state.ranks[index].finished.append(running.request.id)
                        done.append(running.request)
                    }
                }
                state.ranks[index].running = kept
            }
            state.unrouted += tokens
            return (tokens, done)
        }
    }
}
