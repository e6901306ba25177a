import FulcrumCore
import Foundation

/// One routing decision of an attention balancer, as the ledger keeps it: where a request went and what the
/// balancer saw when it chose.
public struct AssignmentRecord: Codable, Hashable, Sendable {
    public var requestID: String
    public var phase: Role
    public var unit: String
    public var worker: String
    public var rank: Int
    /// Prefill: the prompt and its cached prefix.
    public var inputTokens: Int?
    public var cachedTokens: Int?
    /// Decode: the context moved into KV cache and the generation limit, if given.
    public var contextTokens: Int?
    public var maxNewTokens: Int?
    /// The request's own weight: prefill attention work (pairs), decode KV tokens reserved.
    public var cost: Double
    /// The chosen rank before it took the request: prefill queued tokens, decode KV tokens.
    public var rankTokens: Double
    /// Prefill queued requests, decode running requests.
    public var rankRequests: Double
    /// Prefill: Σ predicted step cost of the queue; decode: the rank's step cost (token-equivalents).
    public var rankCost: Double
    /// The unit's ranks before the batch: mean and max of that cost.
    public var unitMeanCost: Double
    public var unitMaxCost: Double
    /// Age of the rank's last report when it was chosen; nil when it never reported since Fulcrum started.
    public var telemetryAgeSeconds: Double?
    /// The balancer that chose: `fulcrum`.
    public var policy: String
    public var assignedAt: Date
    public var finishedAt: Date?

    public init(
        requestID: String, phase: Role, unit: String, worker: String, rank: Int, inputTokens: Int? = nil,
        cachedTokens: Int? = nil, contextTokens: Int? = nil, maxNewTokens: Int? = nil, cost: Double,
        rankTokens: Double, rankRequests: Double, rankCost: Double, unitMeanCost: Double, unitMaxCost: Double,
        telemetryAgeSeconds: Double?, policy: String, assignedAt: Date, finishedAt: Date? = nil
    ) {
        self.requestID = requestID
        self.phase = phase
        self.unit = unit
        self.worker = worker
        self.rank = rank
        self.inputTokens = inputTokens
        self.cachedTokens = cachedTokens
        self.contextTokens = contextTokens
        self.maxNewTokens = maxNewTokens
        self.cost = cost
        self.rankTokens = rankTokens
        self.rankRequests = rankRequests
        self.rankCost = rankCost
        self.unitMeanCost = unitMeanCost
        self.unitMaxCost = unitMaxCost
        self.telemetryAgeSeconds = telemetryAgeSeconds
        self.policy = policy
        self.assignedAt = assignedAt
        self.finishedAt = finishedAt
    }
}

/// A request reported finished, by its worker's telemetry or by a gateway.
public struct RequestFinish: Codable, Hashable, Sendable {
    public var requestID: String
    public var phase: Role
    public var at: Date

    public init(requestID: String, phase: Role, at: Date) {
        self.requestID = requestID
        self.phase = phase
        self.at = at
    }
}
