import DequeModule

/// How a simulated unit's engines, workers and gateway keep time: what `fulcrum bench balance --matrix` varies,
/// because a balancer tuned to one loop can lose on another.
struct ControlLoop: Hashable, Sendable {
    enum Pacing: Hashable, Sendable {
        /// A step lasts its costliest rank's cost / `costPerSecond`, at least `floor` seconds.
        case cost(floor: Double)
        /// Every step lasts this many seconds, whatever it costs (an engine loop paced by something else).
        case fixed(Double)
    }

    enum Cadence: Hashable, Sendable {
        /// A report every so many seconds, on a timer.
        case seconds(Double)
        /// A report after every n-th step, as an engine loop that reports between steps.
        case steps(Int)
    }

    var pacing: Pacing
    var telemetry: Cadence
    /// Seconds from the assignment to the request reaching its engine (the gateway's forwarding).
    var delay = 0.0
    /// Reports list the ids their engine took in.
    var admitted = true
    /// Decode reports carry the rank's output rate.
    var tokensPerSecond = true
    /// The decode gateway offers held-back requests again (`"allowHold": true`).
    var gatewayHolds = true
    /// The gateway sends what arrived as one batch this often.
    var batchEvery = 0.01

    /// The gateway's first batch at or after `time`, and not before `earliest`.
    func tick(after time: Double, notBefore earliest: Double) -> Double {
        max(earliest, (time / batchEvery).rounded(.up) * batchEvery)
    }

    /// `fulcrum bench balance`'s own tables: steps as long as their work, reports every 100 ms.
    static func standard(decodeFloor: Double = 0) -> ControlLoop {
        ControlLoop(pacing: .cost(floor: decodeFloor), telemetry: .seconds(0.1))
    }

    var stepLabel: String {
        switch pacing {
        case .cost: "cost"
        case .fixed(let seconds): seconds >= 1 ? "\(Int(seconds)) s" : "\(Int((seconds * 1000).rounded())) ms"
        }
    }

    /// A short description, the matrix's row label: step, reports, delay, and what is missing.
    var label: String {
        let every: String =
            switch telemetry {
            case .seconds(let seconds): "\(Int((seconds * 1000).rounded())) ms"
            case .steps(let steps): "\(steps) st"
            }
        var parts = ["step \(stepLabel)", "report \(every)", "delay \(Int((delay * 1000).rounded())) ms"]
        if !admitted { parts.append("no admitted") }
        if !tokensPerSecond { parts.append("no tok/s") }
        if !gatewayHolds { parts.append("no hold") }
        return parts.joined(separator: ", ")
    }
}

/// The gateway's forwarding of assigned requests to their engines, `delay` after the assignment.
struct Forwarding {
    let delay: Double
    private var queue = Deque<(time: Double, job: Int, rank: Int)>()

    init(delay: Double) {
        self.delay = delay
    }

    /// When the next request in transit reaches its engine.
    var next: Double? { queue.first?.time }

    /// Sends a request assigned at `now`: delivered at once without a delay, else queued.
    mutating func send(job: Int, rank: Int, now: Double, deliver: (Int, Int) -> Void) {
        if delay > 0 { queue.append((now + delay, job, rank)) } else { deliver(job, rank) }
    }

    /// Delivers what has arrived by `now`; false if nothing had.
    mutating func arrive(by now: Double, deliver: (Int, Int) -> Void) -> Bool {
        guard let first = queue.first, first.time <= now else { return false }
        while let first = queue.first, first.time <= now {
            deliver(first.job, first.rank)
            queue.removeFirst()
        }
        return true
    }
}

extension ControlLoop {
    /// Whether the workers report after the step numbered `steps` ends.
    func reports(afterStep steps: Int) -> Bool {
        if case .steps(let every) = telemetry { steps % every == 0 } else { false }
    }

    /// The first timer report, nil when reports follow steps.
    var firstReport: Double? { if case .seconds(let every) = telemetry { every } else { nil } }

    /// The timer report after one due at `due`.
    func report(after due: Double) -> Double? { if case .seconds(let every) = telemetry { due + every } else { nil } }
}
