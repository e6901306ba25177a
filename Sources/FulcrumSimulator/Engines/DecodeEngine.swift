import DequeModule
import FulcrumCore

/// One decode rank's engine, as the simulated cluster and `fulcrum bench balance` both run it. A request waits on
/// its rank, first come first served, until its context fits in the free KV cache; then each step it makes one
/// token, its context growing by one, until its output is done. A step costs running requests + KV tokens / 14,800
/// (DOMAIN §2.4). Growth past capacity is allowed (an engine would retract a request); at the loads simulated it is
/// rare.
public struct DecodeEngine<Payload: Sendable>: Sendable {
    public struct Request: Sendable {
        public var id: String
        public var payload: Payload
        /// Its context when it started: it grows by one a step.
        public var context: Int
        public var outputTokens: Int
    }

    public let capacity: Int
    public private(set) var waiting = Deque<Request>()
    /// The running requests, by slot; a finished one's slot is reused.
    private var slots: [Request?] = []
    private var freeSlots: [Int] = []
    /// Slots whose request makes its last token in step n, by n: a step costs O(finishing), not O(running).
    private var finishing: [Int: [Int]] = [:]
    private var step = 0
    public private(set) var runningCount = 0
    /// KV tokens of the running requests.
    public private(set) var kvTokens = 0
    public private(set) var waitingTokens = 0
    /// Output tokens a second over the last step, all running requests together.
    public private(set) var tokensPerSecond: Double?
    /// Since the last report: the ids done (its `finished`) and taken in (its `admitted`).
    public private(set) var finished: [String] = []
    public private(set) var admitted: [String] = []

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// Requests it holds, running or waiting for room.
    public var requests: Int { runningCount + waiting.count }
    /// KV it has taken on: in use plus the contexts waiting for room.
    public var committedTokens: Int { kvTokens + waitingTokens }

    public mutating func enqueue(id: String, payload: Payload, context: Int, outputTokens: Int) {
        waiting.append(Request(id: id, payload: payload, context: context, outputTokens: max(1, outputTokens)))
        waitingTokens += context
        admitted.append(id)
    }

    /// Starts the waiting requests that fit, oldest first (calling `started` for each), and returns the step's
    /// cost on this rank.
    public mutating func startStep(started: (Payload) -> Void = { _ in }) -> Double {
        while let next = waiting.first, kvTokens + next.context <= capacity {
            waiting.removeFirst()
            kvTokens += next.context
            waitingTokens -= next.context
            let slot = freeSlots.popLast() ?? slots.count
            if slot == slots.count { slots.append(nil) }
            slots[slot] = next
            // Started in step `step + 1`, it makes its last token in step `step + outputTokens`.
            finishing[step + next.outputTokens, default: []].append(slot)
            runningCount += 1
            started(next.payload)
        }
        return StepCost.decodeStep(runningRequests: Double(runningCount), kvTokens: Double(kvTokens))
    }

    /// The step of `seconds` ended: every running request made a token. Returns the tokens made and the requests
    /// that finished.
    public mutating func finishStep(seconds: Double) -> (tokens: Int, done: [Request]) {
        let made = runningCount
        step += 1
        guard made > 0 else { return (0, []) }
        tokensPerSecond = Double(made) / seconds
        kvTokens += made
        var done: [Request] = []
        for slot in finishing.removeValue(forKey: step) ?? [] {
            guard let request = slots[slot] else { continue }
            kvTokens -= request.context + request.outputTokens
            finished.append(request.id)
            done.append(request)
            slots[slot] = nil
            freeSlots.append(slot)
            runningCount -= 1
        }
        return (made, done)
    }

    /// KV in use (running contexts plus those waiting, at most the capacity), the requests it holds, its output
    /// rate.
    public var load: DecodeLoad {
        DecodeLoad(
            kvTokensUsed: min(capacity, committedTokens), kvTokensCapacity: capacity, runningRequests: requests,
            tokensPerSecond: tokensPerSecond)
    }

    /// The report: the load, and the ids finished and taken in since the previous one.
    public mutating func report() -> (load: DecodeLoad, finished: [String], admitted: [String]) {
        defer {
            finished.removeAll(keepingCapacity: true)
            admitted.removeAll(keepingCapacity: true)
        }
        return (load, finished, admitted)
    }

    /// The rank died: everything it held is lost.
    public mutating func kill() -> [Payload] {
        let lost = slots.compactMap { $0?.payload } + waiting.map(\.payload)
        slots.removeAll()
        freeSlots.removeAll()
        finishing.removeAll()
        waiting.removeAll()
        runningCount = 0
        kvTokens = 0
        waitingTokens = 0
        return lost
    }
}
