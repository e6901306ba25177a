import FulcrumCore
import FulcrumStore
import Foundation
import Hummingbird
import Logging
import NIOHTTP1

/// Every client-visible failure: `{"error": {"code", "message", "field"?}}` with an HTTP status.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    /// Sent with the error (`WWW-Authenticate` on a 401, `ETag` on a 412).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    struct Body: Codable, Sendable {
        struct Detail: Codable, Sendable {
            var code: String
            var message: String
            var field: String?
        }
        var error: Detail
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(error: .init(code: code, message: message, field: field))
        let data = try JSONCoding.encoder.encode(body)
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(
            status: status,
            headers: fields,
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func invalid(_ error: ValidationError) -> APIError {
        APIError(.badRequest, code: "invalid_field", "\(error.field): \(error.message)", field: error.field)
    }
}

extension APIError {
    /// Maps the registry's refusals onto statuses; the store was left unchanged in every case.
    init(_ error: RegistryError) {
        switch error {
        case .invalid(let validation):
            self = .invalid(validation)
        case .unitExists:
            self.init(.conflict, code: "unit_exists", error.description, field: "id")
        case .unitNotFound:
            self.init(.notFound, code: "unit_not_found", error.description, field: "unit")
        case .unitHasLiveWorkers:
            self.init(.conflict, code: "unit_has_live_workers", error.description, field: "unit")
        case .workerNotFound:
            self.init(.notFound, code: "worker_not_found", error.description, field: "worker")
        case .slotTaken:
            self.init(.conflict, code: "slot_taken", error.description, field: "gpu")
        }
    }
}

/// Refuses U+0000 anywhere in the path or query (`%00`): PostgreSQL's text cannot hold it, so a filter or id
/// carrying it would fail in the database rather than be refused as the caller's mistake. Bodies are refused by
/// the JSON syntax check.
struct RefuseNULMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        // A byte scan: this runs on every request, and Foundation's substring search showed in the hot path's profile.
        var inPath = true
        var run = 0  // how much of "%00" the bytes just read spell
        var found = false
        for byte in request.uri.description.utf8 {
            if byte == UInt8(ascii: "?") { inPath = false }
            switch (run, byte) {
            case (_, UInt8(ascii: "%")): run = 1
            case (1, UInt8(ascii: "0")), (2, UInt8(ascii: "0")): run += 1
            default: run = 0
            }
            if run == 3 {
                found = true
                break
            }
        }
        if found {
            throw APIError(
                .badRequest, code: "invalid_field", "U+0000 (%00) is not allowed in the \(inPath ? "path" : "query")",
                field: inPath ? "path" : "query")
        }
        return try await next(request, context)
    }
}

/// Turns whatever a handler throws into an `APIError` body, and logs what the client cannot be told.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Says where the leader is when a write was refused because this replica no longer leads.
    var leadership: Leadership?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as RegistryError {
            throw APIError(error)
        } catch let error as JSONInputError {
            // A member read after the body was parsed (an admin action's `timeoutSeconds`): the same 400.
            throw APIError(error)
        } catch let error as ValidationError {
            throw APIError.invalid(error)
        } catch let error as AdminError {
            throw APIError(error)
        } catch let error as ServiceRefusal {
            if case .ruleNotStored = error {
                context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            }
            throw APIError(error)
        } catch let error as StoreUnavailable {
            context.logger.warning("store unavailable", metadata: ["reason": "\(error.reason)", "path": "\(request.uri.path)"])
            throw APIError(.serviceUnavailable, code: "store_unavailable", "the database is unavailable; retry shortly")
        } catch let error as NotLeader {
            context.logger.notice("write refused: not the leader", metadata: ["reason": "\(error.reason)"])
            throw APIError.notLeader(leaderURL: leadership?.leaderURL)
        } catch is HTTPParserError {
            // The body broke off or its framing (chunk sizes) is malformed: the connection cannot be read further.
            var refusal = APIError(.badRequest, code: "malformed_request", "the HTTP request body could not be parsed")
            refusal.headers[.connection] = "close"
            throw refusal
        } catch let error as HTTPError {
            throw APIError(
                error.status, code: Self.code(for: error.status), error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error(
                "request failed", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            throw APIError(.internalServerError, code: "internal", "internal error; see the server log")
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .contentTooLarge: "body_too_large"
        case .unsupportedMediaType: "unsupported_media_type"
        default: status.code < 500 ? "bad_request" : "internal"
        }
    }
}

extension APIError {
    /// 503 from a replica that does not lead, with the leader's advertised URL when it is known.
    static func notLeader(leaderURL: String?) -> APIError {
        var refusal = APIError(
            .serviceUnavailable, code: "not_leader",
            leaderURL.map { "this replica is a standby; the leader is \($0) (see the Fulcrum-Leader header)" }
                ?? "this replica is a standby and no leader is known yet; retry shortly")
        if let leaderURL { refusal.headers[.fulcrumLeader] = leaderURL }
        refusal.headers[.retryAfter] = "1"
        return refusal
    }

    /// Maps operators' refused changes onto statuses; nothing was changed or audited.
    init(_ error: AdminError) {
        switch error {
        case .preconditionFailed(let target, let current):
            self.init(
                .preconditionFailed, code: "precondition_failed",
                "\(target) changed since it was read: its version is now \(current); read it again and retry",
                field: "If-Match")
            headers[.eTag] = "\"\(current)\""
        case .workerDead(let id):
            self.init(.conflict, code: "worker_dead", "worker '\(id)' is dead; it must register again first", field: "worker")
        case .ruleNotFound(let unit, let id):
            self.init(.notFound, code: "rule_not_found", "unit '\(unit)' has no expert rule \(id)", field: "rule")
        case .rule(.invalid(let validation)):
            self = .invalid(validation)
        case .rule(.conflict(let message)):
            self.init(.conflict, code: "rule_conflict", message, field: "expert")
        }
    }
}

extension APIError {
    /// The services' refusals as statuses and codes: the one place they meet HTTP.
    init(_ refusal: ServiceRefusal) {
        let message = refusal.description
        switch refusal {
        case .wrongPhase: self.init(.badRequest, code: "invalid_field", message, field: "unit")
        case .noEligibleWorkers(_, let units):
            self.init(.serviceUnavailable, code: "no_eligible_workers", message, field: units?.count == 1 ? "unit" : nil)
        case .unknownVersion: self.init(.conflict, code: "unknown_version", message, field: "version")
        case .placementNotFound: self.init(.notFound, code: "placement_not_found", message, field: "version")
        case .requestNotFound: self.init(.notFound, code: "request_not_found", message, field: "id")
        case .versionConflict: self.init(.conflict, code: "version_conflict", message, field: "unit")
        case .balancerPaused: self.init(.conflict, code: "balancer_paused", message, field: "unit")
        case .shuttingDown: self.init(.serviceUnavailable, code: "shutting_down", message)
        case .noExpertLoad: self.init(.conflict, code: "no_expert_load", message, field: "unit")
        case .unsolvable(_, let field): self.init(.conflict, code: "unsolvable", message, field: field)
        case .ruleNotStored: self.init(.internalServerError, code: "internal", message)
        }
    }
}
