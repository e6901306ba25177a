import FulcrumCore
import FulcrumStore
import Foundation
import HTTPTypes
import Hummingbird

/// Operators' actions (all need an admin token): worker and unit state, balancers paused, policy, expert rules,
/// rollback, and the audit trail.
struct OperationsController {
    let operations: OperationsService
    let maxBodyBytes: Int

    func addWorkerRoutes(to workers: RouterGroup<FulcrumRequestContext>) {
        for action in WorkerAction.allCases {
            workers.post(":worker/\(action.rawValue)") { request, context in
                try await workerAction(action, request: request, context: context)
            }
        }
    }

    func addUnitRoutes(to units: RouterGroup<FulcrumRequestContext>) {
        for action in WorkerAction.allCases {
            units.post(":unit/\(action.rawValue)") { request, context in
                try await unitAction(action, request: request, context: context)
            }
        }
        units.get(":unit/controls", use: controls)
        units.post(":unit/balancers/:balancer/pause") { request, context in
            try await pause(true, request: request, context: context)
        }
        units.post(":unit/balancers/:balancer/resume") { request, context in
            try await pause(false, request: request, context: context)
        }
        units.put(":unit/policy", use: policy)
        units.post(":unit/expert-rules", use: addRule)
        units.delete(":unit/expert-rules/:rule", use: deleteRule)
        units.post(":unit/rollback", use: rollback)
    }

    func addAuditRoutes(to v1: RouterGroup<FulcrumRequestContext>) {
        v1.get("audit", use: audit)
    }

    // MARK: Views

    struct WorkerActionView: ResponseEncodable {
        var worker: WorkersController.WorkerDetail
        var changed: Bool
    }

    struct UnitActionView: ResponseEncodable {
        var unit: String
        var changed: [Worker]
        var unchanged: [String]
    }

    /// A unit's controls as operators read them: what is set, what is in force, and each rule's state.
    struct ControlsView: ResponseEncodable {
        struct Rule: Encodable {
            var rule: ExpertRule
            var expired: Bool

            func encode(to encoder: any Encoder) throws {
                try rule.encode(to: encoder)
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(expired, forKey: .expired)
            }

            enum Keys: String, CodingKey { case expired }
        }

        var unit: String
        var version: Int
        var updatedAt: Date?
        var updatedBy: String?
        var paused: UnitControls.Paused
        var policy: UnitPolicy
        var effective: EffectivePolicy
        var expertRules: [Rule]

        init(_ controls: UnitControls, defaults: EffectivePolicy, now: Date = Date()) {
            unit = controls.unit
            version = controls.version
            updatedAt = controls.updatedAt
            updatedBy = controls.updatedBy
            paused = controls.paused
            policy = controls.policy
            effective = defaults.overridden(by: controls.policy)
            expertRules = controls.expertRules.map { Rule(rule: $0, expired: $0.expiresAt <= now) }
        }
    }

    struct AuditView: ResponseEncodable {
        var entries: [AuditEntry]
        var nextBefore: Int?
    }

    // MARK: Helpers

    /// `If-Match: "N"` (or `N`, or `*` for any): the version the caller read; nil without the header.
    static func ifMatch(_ request: Request) throws -> Int? {
        guard let raw = request.headers[.ifMatch]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty, raw != "*"
        else { return nil }
        let unquoted = raw.hasPrefix("W/") ? String(raw.dropFirst(2)) : raw
        guard let version = Int(unquoted.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) else {
            throw APIError(
                .badRequest, code: "invalid_field", "If-Match must be a version as its ETag gave it, such as \"3\"",
                field: "If-Match")
        }
        return version
    }

    /// An admin body: optional (no body is `{}`), unknown members refused, `reason` at most 500 characters.
    func body(_ request: Request, known: Set<String>) async throws -> (JSONObjectReader, reason: String?) {
        try await request.parseJSON(limit: maxBodyBytes, emptyIsObject: true) { (value) throws(JSONInputError) in
            let reader = try JSONObjectReader(value)
            try reader.rejectUnknown(known.union(["reason"]))
            return (reader, try reader.reason())
        }
    }

    static func etag(_ version: Int) -> HTTPFields { [.eTag: "\"\(version)\""] }

    func timeout(_ reader: JSONObjectReader) throws -> Duration? {
        guard let seconds = try reader.optionalInt("timeoutSeconds") else { return nil }
        guard (1...86_400).contains(seconds) else {
            throw APIError(
                .badRequest, code: "invalid_field", "timeoutSeconds must be from 1 to 86400, got \(seconds)",
                field: "timeoutSeconds")
        }
        return .seconds(seconds)
    }

    // MARK: Worker and unit state

    func workerAction(_ action: WorkerAction, request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<WorkerActionView>
    {
        let id = try context.parameters.require("worker")
        let ifMatch = try Self.ifMatch(request)
        let (reader, reason) = try await body(request, known: action == .drain ? ["timeoutSeconds"] : [])
        let result = try await operations.worker(
            id, action, caller: context.actor, reason: reason, timeout: try timeout(reader), ifMatch: ifMatch)
        let detail = operations.detail(of: result.worker, revision: result.revision)
        return EditedResponse(
            status: .ok, headers: Self.etag(result.revision), response: WorkerActionView(worker: detail, changed: result.changed))
    }

    func unitAction(_ action: WorkerAction, request: Request, context: FulcrumRequestContext) async throws
        -> UnitActionView
    {
        let id = try context.parameters.require("unit")
        let (reader, reason) = try await body(request, known: action == .drain ? ["timeoutSeconds"] : [])
        let result = try await operations.unit(
            id, action, caller: context.actor, reason: reason, timeout: try timeout(reader))
        return UnitActionView(unit: id, changed: result.changed, unchanged: result.unchanged)
    }

    // MARK: Controls

    func view(_ controls: UnitControls, status: HTTPResponse.Status = .ok, location: String? = nil)
        -> EditedResponse<ControlsView>
    {
        var headers = Self.etag(controls.version)
        if let location { headers[.location] = location }
        return EditedResponse(
            status: status, headers: headers, response: ControlsView(controls, defaults: operations.book.defaults))
    }

    @Sendable func controls(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<ControlsView> {
        view(try await operations.controls(try context.parameters.require("unit")))
    }

    func pause(_ paused: Bool, request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<ControlsView>
    {
        let unit = try context.parameters.require("unit")
        let name = try context.parameters.require("balancer")
        guard let kind = BalancerKind(rawValue: name) else {
            throw APIError(.notFound, code: "not_found", "balancer must be eplb or attention, got '\(name)'", field: "balancer")
        }
        let ifMatch = try Self.ifMatch(request)
        let (_, reason) = try await body(request, known: [])
        return view(
            try await operations.setPaused(
                unit, kind, paused: paused, caller: context.actor, reason: reason, ifMatch: ifMatch))
    }

    @Sendable func policy(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<ControlsView> {
        let unit = try context.parameters.require("unit")
        let ifMatch = try Self.ifMatch(request)
        let (reader, reason) = try await body(request, known: ["policy"])
        let policy: UnitPolicy
        do throws(JSONInputError) {
            guard let object = try reader.object("policy") else { throw JSONInputError.missing("policy") }
            try object.rejectUnknown([
                "rebalanceIntervalSeconds", "minGain", "maxMoves", "stalePolicy", "windowSeconds", "expertBytes", "linkGBps",
            ])
            policy = UnitPolicy(
                rebalanceIntervalSeconds: try object.optionalNumber("rebalanceIntervalSeconds"),
                minGain: try object.optionalNumber("minGain"), maxMoves: try object.optionalInt("maxMoves"),
                stalePolicy: try object.optionalString("stalePolicy").map { text throws(JSONInputError) in
                    guard let policy = StalenessPolicy(rawValue: text) else {
                        throw JSONInputError(
                            code: "invalid_field", field: "policy.stalePolicy",
                            message: "policy.stalePolicy must be one of last-plus-assigned, exclude")
                    }
                    return policy
                },
                windowSeconds: try object.optionalNumber("windowSeconds"), expertBytes: try object.optionalInt("expertBytes"),
                linkGBps: try object.optionalNumber("linkGBps"))
        } catch {
            throw APIError(error)
        }
        return view(
            try await operations.setPolicy(unit, policy, caller: context.actor, reason: reason, ifMatch: ifMatch))
    }

    @Sendable func addRule(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<ControlsView> {
        let unit = try context.parameters.require("unit")
        let ifMatch = try Self.ifMatch(request)
        let (reader, reason) = try await body(request, known: ["kind", "expert", "rank", "layer", "expiresAt"])
        let draft: OperationsService.RuleDraft
        do throws(JSONInputError) {
            let kindText = try reader.string("kind")
            guard let kind = ExpertRule.Kind(rawValue: kindText) else {
                throw JSONInputError(code: "invalid_field", field: "kind", message: "kind must be pin or forbid")
            }
            draft = .init(
                kind: kind, expert: try reader.int("expert"), rank: try reader.int("rank"),
                layer: try reader.optionalInt("layer"), expiresAt: try reader.date("expiresAt"))
        } catch {
            throw APIError(error)
        }
        let (controls, _) = try await operations.addRule(
            unit, draft, caller: context.actor, reason: reason, ifMatch: ifMatch)
        return view(controls, status: .created, location: "/v1/units/\(unit)/controls")
    }

    @Sendable func deleteRule(request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<ControlsView>
    {
        let unit = try context.parameters.require("unit")
        let text = try context.parameters.require("rule")
        guard let id = Int(text) else {
            throw APIError(.badRequest, code: "invalid_field", "the rule id must be a whole number, got '\(text)'", field: "rule")
        }
        let ifMatch = try Self.ifMatch(request)
        let (_, reason) = try await body(request, known: [])
        return view(
            try await operations.deleteRule(unit, id: id, caller: context.actor, reason: reason, ifMatch: ifMatch))
    }

    struct RollbackView: ResponseEncodable {
        var unit: String
        var version: Int
        var rolledBackTo: Int
        var basedOn: Int
    }

    @Sendable func rollback(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<RollbackView> {
        let unit = try context.parameters.require("unit")
        let ifMatch = try Self.ifMatch(request)
        let (reader, reason) = try await body(request, known: ["version"])
        let version: Int
        do throws(JSONInputError) {
            version = try reader.int("version")
        } catch {
            throw APIError(error)
        }
        guard version >= 1 else {
            throw APIError(.badRequest, code: "invalid_field", "version must be at least 1", field: "version")
        }
        let (placement, basedOn) = try await operations.rollback(
            unit, to: version, caller: context.actor, reason: reason, ifMatch: ifMatch)
        return EditedResponse(
            status: .created,
            headers: [.location: "/v1/units/\(unit)/placements/\(placement.version)", .eTag: "\"\(placement.version)\""],
            response: RollbackView(unit: unit, version: placement.version, rolledBackTo: version, basedOn: basedOn))
    }

    // MARK: Audit

    @Sendable func audit(request: Request, context: FulcrumRequestContext) async throws -> AuditView {
        let query = request.uri.queryParameters
        func text(_ name: String) -> String? { query.get(name).flatMap { $0.isEmpty ? nil : $0 } }
        func date(_ name: String) throws -> Date? {
            guard let raw = text(name) else { return nil }
            guard let date = ISO8601.parse(raw) else {
                throw APIError(
                    .badRequest, code: "invalid_field", "\(name) must be an ISO 8601 timestamp such as 2026-11-22T12:00:00Z",
                    field: name)
            }
            return date
        }
        let limit = try PlacementsController.integer(request, "limit", in: 1...500) ?? 50
        let filter = AuditQuery(
            target: text("target"), action: text("action"), since: try date("since"), until: try date("until"),
            before: try PlacementsController.integer(request, "before", in: 1...Int.max), limit: limit)
        let entries = try await operations.audit(filter)
        return AuditView(entries: entries, nextBefore: entries.count == limit ? entries.last?.id : nil)
    }
}
