import FulcrumCore

/// A simulated unit's engines, of either role.
enum UnitEngine: Sendable {
    case prefill(SimulatedPrefillUnit)
    case decode(SimulatedDecodeUnit)

    var unit: ClusterShape.Unit {
        switch self {
        case .prefill(let engine): engine.unit
        case .decode(let engine): engine.unit
        }
    }

    var experts: ExpertRouting {
        switch self {
        case .prefill(let engine): engine.experts
        case .decode(let engine): engine.experts
        }
    }

    func run() async {
        switch self {
        case .prefill(let engine): await engine.run()
        case .decode(let engine): await engine.run()
        }
    }

    func enqueue(_ request: SimulatedRequest, rank: Int) -> Bool {
        switch self {
        case .prefill(let engine): engine.enqueue(request, rank: rank)
        case .decode(let engine): engine.enqueue(request, rank: rank)
        }
    }

    func kill(rank: Int) -> [SimulatedRequest] {
        switch self {
        case .prefill(let engine): engine.kill(rank: rank)
        case .decode(let engine): engine.kill(rank: rank)
        }
    }

    func slow(rank: Int, by factor: Double) {
        switch self {
        case .prefill(let engine): engine.slow(rank: rank, by: factor)
        case .decode(let engine): engine.slow(rank: rank, by: factor)
        }
    }

    /// The load section of the rank's telemetry report (JSON members) and the ids finished and taken in since its
    /// last one.
    func reportSection(rank: Int) -> (json: String, finished: [String], admitted: [String]) {
        switch self {
        case .prefill(let engine):
            let (load, finished, admitted) = engine.report(rank: rank)
            return (
                #""prefill": {"queuedTokens": \#(load.queuedTokens), "queuedRequests": \#(load.queuedRequests), "attentionWork": \#(load.attentionWork)}"#,
                finished, admitted
            )
        case .decode(let engine):
            let (load, finished, admitted) = engine.report(rank: rank)
            let rate = load.tokensPerSecond.map { #", "tokensPerSecond": \#(Int($0.rounded()))"# } ?? ""
            return (
                #""decode": {"kvTokensUsed": \#(load.kvTokensUsed), "kvTokensCapacity": \#(load.kvTokensCapacity), "runningRequests": \#(load.runningRequests)\#(rate)}"#,
                finished, admitted
            )
        }
    }
}
