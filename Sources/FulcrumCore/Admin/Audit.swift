import Foundation

/// One operator action as the audit trail records it: who (the token's name), what, on which target, why, and the
/// target before and after. Entries are only ever appended.
public struct AuditEntry: Codable, Hashable, Sendable {
    /// Assigned by the store, rising.
    public var id: Int
    public var at: Date
    public var actor: String
    public var action: String
    /// `worker/<id>` or `unit/<id>`.
    public var target: String
    public var reason: String?
    public var before: JSONValue?
    public var after: JSONValue?

    public init(
        id: Int = 0, at: Date, actor: String, action: String, target: String, reason: String?, before: JSONValue?,
        after: JSONValue?
    ) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.target = target
        self.reason = reason
        self.before = before
        self.after = after
    }

    public static func worker(_ id: String) -> String { "worker/\(id)" }
    public static func unit(_ id: String) -> String { "unit/\(id)" }

    /// Reasons are free text from operators: bounded so the trail stays readable.
    public static let maxReasonLength = 500
}

/// A page of the audit trail: newest first, optionally filtered.
public struct AuditQuery: Hashable, Sendable {
    public var target: String?
    public var action: String?
    public var since: Date?
    public var until: Date?
    /// Only entries with a smaller id (paging).
    public var before: Int?
    public var limit: Int

    public init(
        target: String? = nil, action: String? = nil, since: Date? = nil, until: Date? = nil, before: Int? = nil,
        limit: Int = 50
    ) {
        self.target = target
        self.action = action
        self.since = since
        self.until = until
        self.before = before
        self.limit = limit
    }

    public func matches(_ entry: AuditEntry) -> Bool {
        (target == nil || entry.target == target) && (action == nil || entry.action == action)
            && (since.map { entry.at >= $0 } ?? true) && (until.map { entry.at < $0 } ?? true)
            && (before.map { entry.id < $0 } ?? true)
    }
}

/// Why an operator's change was refused; the store is unchanged and nothing is audited.
public enum AdminError: Error, Hashable, Sendable {
    /// The target changed since the caller read it: `current` is its version now.
    case preconditionFailed(target: String, current: String)
    case workerDead(String)
    case ruleNotFound(unit: String, id: Int)
    case rule(ExpertRuleError)
}

/// An operator's worker state change as decided and recorded.
public struct WorkerChangeOutcome: Hashable, Sendable {
    public var worker: Worker
    /// nil: the worker already was where the action leads; nothing is recorded.
    public var change: WorkerStateChange?
    /// The worker's revision after the change.
    public var revision: Int

    public init(worker: Worker, change: WorkerStateChange?, revision: Int) {
        self.worker = worker
        self.change = change
        self.revision = revision
    }
}

/// What an operator's state change means for a worker.
public enum WorkerAction: String, Sendable, CaseIterable {
    case cordon
    case uncordon
    case drain

    public var target: WorkerState {
        switch self {
        case .cordon: .cordoned
        case .uncordon: .active
        case .drain: .draining
        }
    }

    /// Decides an operator's change of `worker`, whose recorded revision is `revision`, for every store alike: a
    /// stale `expectedRevision` and a dead worker are refused; a worker already where the action leads is left
    /// alone (`change` nil, nothing to record).
    public func decide(_ worker: Worker, revision: Int, expectedRevision: Int?, audit: AuditEntry)
        throws(AdminError) -> WorkerChangeOutcome
    {
        if let expectedRevision, expectedRevision != revision {
            throw .preconditionFailed(target: AuditEntry.worker(worker.id), current: "\(revision)")
        }
        guard worker.state != .dead else { throw .workerDead(worker.id) }
        guard let next = next(from: worker.state) else {
            return WorkerChangeOutcome(worker: worker, change: nil, revision: revision)
        }
        var updated = worker
        updated.state = next
        let reason = audit.reason.map { "\(rawValue) by \(audit.actor): \($0)" } ?? "\(rawValue) by \(audit.actor)"
        let change = WorkerStateChange(
            worker: worker.id, unit: worker.unit, from: worker.state, to: next, reason: reason, at: audit.at)
        return WorkerChangeOutcome(worker: updated, change: change, revision: revision + 1)
    }

    /// The state a live worker in `state` moves to, or nil when it is already where the action leads (a drained
    /// worker asked to drain stays drained). Dead workers are refused before this.
    public func next(from state: WorkerState) -> WorkerState? {
        switch (self, state) {
        case (_, .dead): nil
        case (.drain, .drained), (.drain, .draining), (.cordon, .cordoned), (.uncordon, .active): nil
        default: target
        }
    }
}
