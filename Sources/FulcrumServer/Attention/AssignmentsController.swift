import FulcrumCore
import FulcrumStore
import Foundation
import HTTPTypes
import Hummingbird

/// The routes gateways use: a rank for each request of a batch, and requests that finished. Operators look up
/// where a request went.
struct AssignmentsController {
    let assignments: AssignmentService
    let ledger: RequestLedger
    let scopes: ScopeGuard
    let maxBodyBytes: Int

    func addRoutes(to v1: RouterGroup<FulcrumRequestContext>) {
        v1.post("prefill/assignments", use: prefill)
        v1.post("decode/assignments", use: decode)
        v1.post("requests/finished", use: finished)
        v1.get("requests/:id", use: request)
    }

    struct AnswerView: ResponseEncodable {
        var assignments: [AssignmentService.Assignment]
        var errors: [AssignmentService.Refusal]?
    }

    /// `POST /v1/prefill/assignments[?unit=]` `{"requests": [{"id", "inputTokens", "cachedTokens"?}]}`.
    @Sendable func prefill(request: Request, context: FulcrumRequestContext) async throws -> AnswerView {
        let batch = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            let root = try JSONObjectReader(json)
            try root.rejectUnknown(["requests"])
            var requests: [PrefillRequest] = []
            for item in try root.objects("requests") {
                try item.rejectUnknown(["id", "inputTokens", "cachedTokens"])
                requests.append(
                    PrefillRequest(
                        id: try item.string("id"), inputTokens: try item.int("inputTokens"),
                        cachedTokens: try item.optionalInt("cachedTokens") ?? 0))
            }
            return requests
        }
        let units = try scopes.units(asking: try Self.unit(request), context)
        try scopes.check(remembered: assignments.units(remembering: batch.map(\.id), phase: .prefill), context)
        let answer = try assignments.assign(prefill: batch, units: units)
        return AnswerView(assignments: answer.assignments, errors: nil)
    }

    /// `POST /v1/decode/assignments[?unit=]` `{"requests": [{"id", "contextTokens", "maxNewTokens"?}], "allowHold"?}`:
    /// requests no rank has room for are listed in `errors`; the rest are assigned. Only a gateway that says
    /// `"allowHold": true` (it offers `held_back` requests again) may be told to wait.
    @Sendable func decode(request: Request, context: FulcrumRequestContext) async throws -> AnswerView {
        let (batch, allowHold) = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            let root = try JSONObjectReader(json)
            // A misspelt "allowHold" would silently change what the gateway gets: refused, as in the items.
            try root.rejectUnknown(["requests", "allowHold"])
            var requests: [DecodeRequest] = []
            for item in try root.objects("requests") {
                try item.rejectUnknown(["id", "contextTokens", "maxNewTokens"])
                requests.append(
                    DecodeRequest(
                        id: try item.string("id"), contextTokens: try item.int("contextTokens"),
                        maxNewTokens: try item.optionalInt("maxNewTokens")))
            }
            return (requests, try root.optionalBool("allowHold") ?? false)
        }
        let units = try scopes.units(asking: try Self.unit(request), context)
        try scopes.check(remembered: assignments.units(remembering: batch.map(\.id), phase: .decode), context)
        let answer = try assignments.assign(decode: batch, units: units, allowHold: allowHold)
        return AnswerView(assignments: answer.assignments, errors: answer.errors)
    }

    static func unit(_ request: Request) throws -> String? {
        guard let unit = request.uri.queryParameters.get("unit") else { return nil }
        try Identifier.validate(unit, field: "unit")
        return unit
    }

    struct FinishedView: ResponseEncodable {
        var finished: Int
        /// Ids no balancer remembers (never assigned, or assigned too long ago).
        var unknown: [String]
    }

    /// `POST /v1/requests/finished {"ids": [...]}`: the requests leave the balancers' load models at once.
    @Sendable func finished(request: Request, context: FulcrumRequestContext) async throws -> FinishedView {
        let ids = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            guard let ids = try JSONObjectReader(json).strings("ids") else { throw .missing("ids") }
            return ids
        }
        try AssignmentLimits.validate(finished: ids)
        // A scoped gateway's finishes count only for requests it could have assigned; others are unknown to it.
        let unknown = assignments.finished(ids, within: context.caller?.units)
        return FinishedView(finished: ids.count - unknown.count, unknown: unknown)
    }

    struct RequestView: ResponseEncodable {
        var id: String
        /// Prefill first, then decode: where the request went, what the balancer saw, when it finished.
        var assignments: [AssignmentRecord]
    }

    /// `GET /v1/requests/{id}`: where a request went and why, from the ledger and the rows not written yet.
    @Sendable func request(request: Request, context: FulcrumRequestContext) async throws -> RequestView {
        // Request ids are the gateways' own, any text: a client percent-encodes what a path cannot hold.
        guard let id = try context.parameters.require("id").removingPercentEncoding else {
            throw APIError(.badRequest, code: "invalid_field", "the request id is not valid percent-encoding", field: "id")
        }
        guard TelemetryReport.Limits.requestIDLength.contains(id.utf8.count) else {
            throw APIError(.badRequest, code: "invalid_field", "request ids are 1 to 128 bytes long", field: "id")
        }
        var records = try await ledger.records(of: id)
        // A scoped gateway sees the phases assigned in its units only.
        if let allowed = context.caller?.units {
            records = records.filter { allowed.contains($0.value.unit) }
            if records.isEmpty { throw scopes.refusal("request '\(id)' of another unit", context) }
        }
        return RequestView(id: id, assignments: Role.allCases.compactMap { records[$0] })
    }
}
