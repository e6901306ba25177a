import Foundation

/// The two kinds of balancer an operator can pause on a unit.
public enum BalancerKind: String, Codable, Sendable, CaseIterable, StrictEnum {
    /// The expert-parallel load balancer: paused, it publishes nothing.
    case eplb
    /// The unit's core-attention balancer (prefill or decode by the unit's role): paused, its ranks are chosen by
    /// least tokens.
    case attention
}

/// What operators have set on a unit: paused balancers, its policy and its expert rules. One version for all of
/// it, so concurrent changes to a unit are detected (optimistic concurrency) whatever part they touch.
public struct UnitControls: Codable, Hashable, Sendable {
    public struct Paused: Codable, Hashable, Sendable {
        public var eplb = false
        public var attention = false

        public init(eplb: Bool = false, attention: Bool = false) {
            self.eplb = eplb
            self.attention = attention
        }

        public subscript(kind: BalancerKind) -> Bool {
            get { kind == .eplb ? eplb : attention }
            set {
                if kind == .eplb { eplb = newValue } else { attention = newValue }
            }
        }
    }

    public var unit: String
    /// 0 until the first change; each change adds one.
    public var version: Int
    public var updatedAt: Date?
    public var updatedBy: String?
    public var paused: Paused
    public var policy: UnitPolicy
    public var expertRules: [ExpertRule]
    /// Rule ids are never reused within a unit.
    public var nextRuleID: Int

    public init(
        unit: String, version: Int = 0, updatedAt: Date? = nil, updatedBy: String? = nil, paused: Paused = Paused(),
        policy: UnitPolicy = UnitPolicy(), expertRules: [ExpertRule] = [], nextRuleID: Int = 1
    ) {
        self.unit = unit
        self.version = version
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
        self.paused = paused
        self.policy = policy
        self.expertRules = expertRules
        self.nextRuleID = nextRuleID
    }

    /// The rules in force at `now`.
    public func activeRules(at now: Date) -> [ExpertRule] {
        expertRules.filter { $0.expiresAt > now }
    }
}
