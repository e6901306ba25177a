import FulcrumCore
import Synchronization

/// Operators' controls of every unit, mirrored in memory: the balancers read them on every batch and check, and
/// must not wait on PostgreSQL for that. The store is written first; this follows.
public final class UnitControlsBook: Sendable {
    /// The server-wide settings a unit's policy overrides.
    public let defaults: EffectivePolicy
    private let state = Mutex([String: UnitControls]())

    public init(defaults: EffectivePolicy) {
        self.defaults = defaults
    }

    func load(_ all: [UnitControls]) {
        state.withLock { $0 = Dictionary(all.map { ($0.unit, $0) }, uniquingKeysWith: { $1 }) }
    }

    func put(_ controls: UnitControls) {
        state.withLock { $0[controls.unit] = controls }
    }

    func forget(unit: String) {
        state.withLock { $0[unit] = nil }
    }

    public func controls(_ unit: String) -> UnitControls {
        state.withLock { $0[unit] } ?? UnitControls(unit: unit)
    }

    public func effective(_ unit: String) -> EffectivePolicy {
        defaults.overridden(by: controls(unit).policy)
    }

    public func paused(_ unit: String, _ kind: BalancerKind) -> Bool {
        state.withLock { $0[unit]?.paused[kind] } ?? false
    }

    /// Units whose attention balancer is paused, and units with their own staleness policy: what an assignment
    /// batch needs, in one pass under the lock.
    func attentionSettings() -> (paused: Set<String>, stalePolicies: [String: StalenessPolicy]) {
        state.withLock { all in
            var paused = Set<String>()
            var policies: [String: StalenessPolicy] = [:]
            for (unit, controls) in all {
                if controls.paused.attention { paused.insert(unit) }
                if let policy = controls.policy.stalePolicy { policies[unit] = policy }
            }
            return (paused, policies)
        }
    }
}
