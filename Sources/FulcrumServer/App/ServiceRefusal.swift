import FulcrumCore

/// Why a service refused, in the domain's terms. Services throw these (and `RegistryError`, `AdminError`,
/// `ValidationError`); `ErrorMiddleware` maps each to a status and code in one place (`APIError.init(_:)`), so no
/// service speaks HTTP.
enum ServiceRefusal: Error, Equatable {
    /// `?unit=` names a unit of the other phase.
    case wrongPhase(unit: String, role: Role)
    /// No active, reporting worker of `role` (in `units`, when given) can take work.
    case noEligibleWorkers(role: Role, units: Set<String>?)
    /// An acknowledgement of a version never published.
    case unknownVersion(unit: String, version: Int, current: Int)
    case placementNotFound(unit: String, version: Int, current: Int)
    case requestNotFound(String)
    /// Another publish got there first, or the proposal was made against an older version.
    case versionConflict(String)
    case balancerPaused(unit: String)
    case shuttingDown
    case noExpertLoad(unit: String, window: Duration)
    /// No placement serves the unit under these conditions; `field` names what to change.
    case unsolvable(String, field: String)
    case ruleNotStored
}

extension ServiceRefusal: CustomStringConvertible {
    var description: String {
        switch self {
        case .wrongPhase(let unit, let role): "unit '\(unit)' is a \(role.rawValue) unit"
        case .noEligibleWorkers(let role, let units):
            "no \(role.rawValue) worker can take work"
                + (units.map { $0.count == 1 ? " in unit '\($0.first ?? "")'" : " in units \($0.sorted().joined(separator: ", "))" } ?? "")
                + ": none is active and reporting telemetry"
        case .unknownVersion(let unit, let version, let current):
            "unit '\(unit)' has placement versions 1 to \(current); \(version) was never published"
        case .placementNotFound(let unit, let version, let current):
            "unit '\(unit)' has no placement version \(version); its current version is \(current)"
        case .requestNotFound(let id): "no request '\(id)' was assigned"
        case .versionConflict(let message): message
        case .balancerPaused(let unit):
            "the expert-parallel balancer of unit '\(unit)' is paused; resume it, or ask for a dry run"
        case .shuttingDown: "the rebalancer has stopped"
        case .noExpertLoad(let unit, let window):
            "no expert load was reported for unit '\(unit)' in the last \(window); workers send per-slot token counts "
                + "in the experts field of their telemetry"
        case .unsolvable(let message, _): message
        case .ruleNotStored: "the rule was not stored"
        }
    }
}
