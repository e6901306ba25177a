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
