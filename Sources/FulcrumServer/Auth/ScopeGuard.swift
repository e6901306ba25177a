import FulcrumCore

/// Holds scoped tokens to their scope: a worker token bound to a worker id or to units speaks only for those
/// workers, a gateway token bound to units assigns only in them. Refusals are 403 `out_of_scope`, counted.
/// Unscoped tokens pass untouched, at the cost of one optional check on the hot path.
struct ScopeGuard: Sendable {
    let fleet: Fleet
    let events: EventCounters

    /// The caller may speak for `worker` (registering it in `unit`, when given). A worker Fulcrum does not know
    /// passes: its handler answers 404 as to anyone.
    func check(worker: String, registeringIn unit: String? = nil, _ context: FulcrumRequestContext) throws {
        guard let caller = context.caller, caller.scope != nil else { return }
        let current = fleet.member(worker)?.unit.id
        guard caller.mayActFor(worker: worker, unit: current), unit.map({ caller.mayActFor(worker: worker, unit: $0) }) ?? true
        else {
            events.refusedOutOfScope(caller.role)
            throw APIError.outOfScope(caller, "worker '\(worker)'\(unit.map { " in unit '\($0)'" } ?? "")")
        }
    }

    /// The units a gateway may assign in: `?unit=` when in scope (403 when not), else its scope (nil for any).
    func units(asking unit: String?, _ context: FulcrumRequestContext) throws -> Set<String>? {
        guard let caller = context.caller, let allowed = caller.units else { return unit.map { [$0] } }
        guard let unit else { return allowed }
        guard allowed.contains(unit) else {
            events.refusedOutOfScope(caller.role)
            throw APIError.outOfScope(caller, "unit '\(unit)'")
        }
        return [unit]
    }

    /// The refusal of a scoped caller acting for `what`, counted.
    func refusal(_ what: String, _ context: FulcrumRequestContext) -> APIError {
        let caller = context.caller ?? .anonymous
        events.refusedOutOfScope(caller.role)
        return APIError.outOfScope(caller, what)
    }

    /// Refuses a batch naming requests already assigned outside the caller's units: a retry is answered from the
    /// book, which would show another unit's rank.
    func check(remembered units: [String: String], _ context: FulcrumRequestContext) throws {
        guard let caller = context.caller, let allowed = caller.units,
            let (id, _) = units.first(where: { !allowed.contains($0.value) })
        else { return }
        events.refusedOutOfScope(caller.role)
        throw APIError.outOfScope(caller, "request '\(id)', assigned in another unit")
    }
}
