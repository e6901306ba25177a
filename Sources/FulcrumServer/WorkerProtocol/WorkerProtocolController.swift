import FulcrumCore
import Foundation
import HTTPTypes
import Hummingbird

/// The routes GPU workers use: telemetry in, placement updates out.
struct WorkerProtocolController {
    let telemetry: TelemetryService
    let placements: PlacementService
    let fleet: Fleet
    let scopes: ScopeGuard
    let maxBodyBytes: Int

    /// Long polls may wait up to this long; a client's timeout must be longer.
    static let maxWait = 0...120

    func addRoutes(to workers: RouterGroup<FulcrumRequestContext>) {
        workers.post(":worker/telemetry", use: report)
        workers.get(":worker/placement", use: placement)
        workers.post(":worker/placement/ack", use: ack)
    }

    /// `{"accepted", "seq", "lastSeq"?, "state"}`, written by hand: this answer goes out 22,000 times a second.
    /// `state` is the worker's directive, so a worker learns of a cordon or drain within one report; `lastSeq`,
    /// on a duplicate, is the newest seq already applied.
    static func telemetryAnswer(accepted: Bool, seq: Int, lastSeq: Int?, state: WorkerState) -> Response {
        let last = lastSeq.map { #","lastSeq":\#($0)"# } ?? ""
        let json = #"{"accepted":\#(accepted)\#(last),"seq":\#(seq),"state":"\#(state.rawValue)"}"#
        return Response(
            status: .accepted, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    @Sendable func report(request: Request, context: FulcrumRequestContext) async throws -> Response {
        let id = try context.parameters.require("worker")
        let report = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            try TelemetryReport(json: json)
        }
        // After the body: the worker may have registered (into another unit) while it was being sent.
        try scopes.check(worker: id, context)
        switch try telemetry.ingest(report, from: id) {
        case .applied(_, let state):
            return Self.telemetryAnswer(accepted: true, seq: report.seq, lastSeq: nil, state: state)
        case .duplicate(let lastSeq, let state):
            return Self.telemetryAnswer(accepted: false, seq: report.seq, lastSeq: lastSeq, state: state)
        }
    }

    @Sendable func placement(request: Request, context: FulcrumRequestContext) async throws -> Response {
        let id = try context.parameters.require("worker")
        try scopes.check(worker: id, context)
        let known = try Self.knownVersion(request)
        var wait = 0
        if let raw = request.uri.queryParameters["wait"], !raw.isEmpty {
            guard let seconds = Int(raw), Self.maxWait.contains(seconds) else {
                throw APIError(
                    .badRequest, code: "invalid_field",
                    "wait must be a whole number of seconds from 0 to \(Self.maxWait.upperBound), got '\(raw)'",
                    field: "wait")
            }
            wait = seconds
        }
        guard let view = try await placements.poll(id, known: known, wait: .seconds(wait)) else {
            return Response(status: .notModified, headers: [.eTag: Self.etag(known ?? 0)])
        }
        return Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8", .eTag: Self.etag(view.version)],
            body: .init(byteBuffer: view.json))
    }

    @Sendable func ack(request: Request, context: FulcrumRequestContext) async throws -> PlacementService.AckResult {
        let id = try context.parameters.require("worker")
        let version = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            try JSONObjectReader(json).int("version")
        }
        try scopes.check(worker: id, context)
        guard version >= 1 else {
            throw APIError(.badRequest, code: "invalid_field", "version must be at least 1", field: "version")
        }
        return try placements.acknowledge(id, version: version)
    }

    static func etag(_ version: Int) -> String { "\"\(version)\"" }

    /// The version named by `If-None-Match` (`"5"`, `W/"5"` or `5`); nil when absent.
    static func knownVersion(_ request: Request) throws -> Int? {
        guard let raw = request.headers[.ifNoneMatch] else { return nil }
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("W/") { text.removeFirst(2) }
        text = text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard let version = Int(text), version >= 0 else {
            throw APIError(
                .badRequest, code: "invalid_field", "If-None-Match must be a placement version such as \"5\"",
                field: "If-None-Match")
        }
        return version
    }
}
