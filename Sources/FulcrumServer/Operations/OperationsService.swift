import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// Operators' actions: worker and unit state (cordon, uncordon, drain), pausing balancers, per-unit policy, expert
/// rules and rollbacks. Each is validated first, then written to the store together with its audit entry (so a
/// refused action changes nothing and is audited as nothing), then mirrored in memory.
struct OperationsService: Sendable {
    let registry: RegistryService
    let store: any OperationsStore
    let deadline: StoreDeadline
    let fleet: Fleet
    let book: UnitControlsBook
    let drains: DrainService
    let placements: PlacementService
    let hub: PlacementHub
    let staleAfter: Duration
    /// The longest expert-load window kept: a unit's policy may not ask for more.
    let maxWindow: Duration
    let logger: Logger

    // MARK: Worker state

    struct WorkerResult: Sendable {
        var worker: Worker
        var changed: Bool
        var revision: Int
    }

    func worker(
        _ id: String, _ action: WorkerAction, caller: Caller, reason: String?, timeout: Duration?, ifMatch: Int?
    ) async throws -> WorkerResult {
        try Identifier.validate(id, field: "worker")
        var after: [String: JSONValue] = ["state": .string(action.target.rawValue)]
        if let timeout { after["timeoutSeconds"] = .double(timeout.seconds) }
        let entry = caller.audit(
            "worker.\(action.rawValue)", target: AuditEntry.worker(id), reason: reason,
            before: fleet.member(id).map { .object(["state": .string($0.member.worker.state.rawValue)]) },
            after: .object(after))
        let outcome = try await deadline.run { [store] in
            try await store.changeWorkerState(id, action: action, audit: entry, expectedRevision: ifMatch)
        }
        if let change = outcome.change {
            fleet.setState(id, to: change.to)
            if change.to == .draining {
                drains.start(id, timeout: timeout ?? DrainService.defaultTimeout, by: caller.name)
            } else {
                drains.cancel(id)
            }
            logger.notice(
                "worker state changed by an operator",
                metadata: [
                    "worker": "\(id)", "from": "\(change.from?.rawValue ?? "none")", "to": "\(change.to.rawValue)",
                    "by": "\(caller.name)",
                ])
        }
        return WorkerResult(worker: outcome.worker, changed: outcome.change != nil, revision: outcome.revision)
    }

    /// The action on every live worker of a unit, each recorded on its own, plus one entry for the unit.
    func unit(_ id: String, _ action: WorkerAction, caller: Caller, reason: String?, timeout: Duration?) async throws
        -> (changed: [Worker], unchanged: [String])
    {
        let unit = try await registry.unit(id)
        var changed: [Worker] = []
        var unchanged: [String] = []
        for member in fleet.workers(unit: unit.id, state: nil) where member.state.isLive {
            do {
                let result = try await worker(
                    member.id, action, caller: caller, reason: "unit \(unit.id): \(reason ?? action.rawValue)",
                    timeout: timeout, ifMatch: nil)
                if result.changed { changed.append(result.worker) } else { unchanged.append(member.id) }
            } catch AdminError.workerDead {
                // It died between the listing and its turn: the action is for live workers, and the others have
                // already changed, so this one is left as it is rather than failing the unit halfway.
                unchanged.append(member.id)
            }
        }
        var entry = caller.audit("unit.\(action.rawValue)", target: AuditEntry.unit(unit.id), reason: reason)
        entry.after = .object(["workers": .array(changed.map { .string($0.id) })])
        let frozen = entry
        try await deadline.run { [store] in try await store.appendAudit(frozen) }
        return (changed, unchanged)
    }

    func detail(of worker: Worker, revision: Int) -> WorkersController.WorkerDetail {
        WorkersController.detail(of: worker, revision: revision, fleet: fleet, drains: drains, staleAfter: staleAfter)
    }

    // MARK: Unit controls

    func controls(_ unit: String) async throws -> UnitControls {
        _ = try await registry.unit(unit)
        return try await deadline.run { [store] in try await store.unitControls(unit) }
    }

    private func update(
        _ unit: String, action: String, caller: Caller, reason: String?, ifMatch: Int?,
        _ change: @escaping @Sendable (inout UnitControls) throws -> Void
    ) async throws -> UnitControls {
        _ = try await registry.unit(unit)
        let entry = caller.audit(action, target: AuditEntry.unit(unit), reason: reason)
        let (_, after) = try await deadline.run { [store] in
            try await store.updateUnitControls(unit, expectedVersion: ifMatch, audit: entry, change)
        }
        book.put(after)
        logger.notice(
            "unit controls changed", metadata: ["unit": "\(unit)", "action": "\(action)", "by": "\(caller.name)", "version": "\(after.version)"])
        return after
    }

    func setPaused(_ unit: String, _ kind: BalancerKind, paused: Bool, caller: Caller, reason: String?, ifMatch: Int?)
        async throws -> UnitControls
    {
        try await update(unit, action: paused ? "balancer.pause" : "balancer.resume", caller: caller, reason: reason, ifMatch: ifMatch) {
            $0.paused[kind] = paused
        }
    }

    func setPolicy(_ unit: String, _ policy: UnitPolicy, caller: Caller, reason: String?, ifMatch: Int?) async throws
        -> UnitControls
    {
        try policy.validate(maxWindow: maxWindow)
        return try await update(unit, action: "policy.update", caller: caller, reason: reason, ifMatch: ifMatch) {
            $0.policy = policy
        }
    }

    struct RuleDraft: Sendable {
        var kind: ExpertRule.Kind
        var expert: Int
        var rank: Int
        var layer: Int?
        var expiresAt: Date
    }

    func addRule(_ unit: String, _ draft: RuleDraft, caller: Caller, reason: String?, ifMatch: Int?) async throws
        -> (controls: UnitControls, rule: ExpertRule)
    {
        let shape = try await registry.unit(unit)
        let now = Date()
        let controls = try await update(unit, action: "expert_rule.create", caller: caller, reason: reason, ifMatch: ifMatch) {
            controls in
            let rule = ExpertRule(
                id: controls.nextRuleID, kind: draft.kind, expert: draft.expert, rank: draft.rank, layer: draft.layer,
                expiresAt: draft.expiresAt, createdAt: now, createdBy: caller.name, reason: reason)
            do throws(ExpertRuleError) {
                try ExpertRule.check(rule, unit: shape, active: controls.activeRules(at: now), at: now)
            } catch {
                throw AdminError.rule(error)
            }
            // Expired rules leave the list when the next one is added: the audit trail keeps them.
            controls.expertRules = controls.activeRules(at: now) + [rule]
            controls.nextRuleID += 1
        }
        guard let rule = controls.expertRules.last else {
            throw ServiceRefusal.ruleNotStored
        }
        return (controls, rule)
    }

    func deleteRule(_ unit: String, id: Int, caller: Caller, reason: String?, ifMatch: Int?) async throws -> UnitControls {
        try await update(unit, action: "expert_rule.delete", caller: caller, reason: reason, ifMatch: ifMatch) { controls in
            guard controls.expertRules.contains(where: { $0.id == id }) else {
                throw AdminError.ruleNotFound(unit: unit, id: id)
            }
            controls.expertRules.removeAll { $0.id == id }
        }
    }

    // MARK: Audit

    /// The audit trail, newest first.
    func audit(_ query: AuditQuery) async throws -> [AuditEntry] {
        try await deadline.run { [store] in try await store.audit(query) }
    }

    // MARK: Rollback

    /// Publishes version `version`'s table as a new version, so workers only ever move forward. Ranks dead now stay
    /// excluded.
    func rollback(_ unitID: String, to version: Int, caller: Caller, reason: String?, ifMatch: Int?) async throws
        -> (placement: Placement, basedOn: Int)
    {
        let unit = try await registry.unit(unitID)
        let current = hub.current(for: unit)
        if let ifMatch, ifMatch != current.version {
            throw AdminError.preconditionFailed(target: "unit/\(unit.id)/placement", current: "\(current.version)")
        }
        let table = try await placements.record(unit: unit, version: version).placement.phy2log
        let liveness = fleet.rankLiveness()[unit.id]
        let dead = (liveness?.dead ?? []).subtracting(liveness?.live ?? [])
        var entry = caller.audit("placement.rollback", target: AuditEntry.unit(unit.id), reason: reason)
        entry.before = .object(["version": .int(current.version)])
        entry.after = .object(["rolledBackTo": .int(version), "version": .int(current.version + 1)])
        let placement: Placement
        do {
            placement = try await placements.publish(
                unit: unit, phy2log: table, excludedRanks: dead.sorted(),
                details: PlacementDetails(trigger: .rollback, basedOn: current.version, audit: entry))
        } catch let error as ValidationError {
            throw ServiceRefusal.unsolvable(
                "version \(version) cannot serve with ranks \(dead.sorted()) dead: \(error.message)", field: "version")
        }
        return (placement, current.version)
    }
}
