import FulcrumCore
import Foundation
import Hummingbird

/// Who made a request: the token's name and role, or the anonymous caller of a server run without tokens.
public struct Caller: Hashable, Sendable {
    public var name: String
    public var role: AccessRole
    /// What a scoped worker or gateway token may speak for; nil for any.
    public var scope: TokenScope? = nil

    /// Every caller of a server without tokens (the in-memory dev store on a loopback address).
    static let anonymous = Caller(name: "anonymous", role: .admin)

    /// An audit entry for an action of this caller, now.
    func audit(
        _ action: String, target: String, reason: String?, before: JSONValue? = nil, after: JSONValue? = nil
    ) -> AuditEntry {
        AuditEntry(at: Date(), actor: name, action: action, target: target, reason: reason, before: before, after: after)
    }
}

extension FulcrumRequestContext {
    /// Who is acting: the authenticated caller, or the anonymous admin of a server run without tokens.
    var actor: Caller { caller ?? .anonymous }
}

/// Finds the caller from `Authorization: Bearer <token>`: 401 without one or with one that is not configured.
/// Without configured tokens (allowed only in dev mode on loopback) every caller is an anonymous admin.
struct AuthenticationMiddleware: RouterMiddleware {
    let tokens: TokenBook

    func handle(
        _ request: Request, context: FulcrumRequestContext,
        next: (Request, FulcrumRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.caller = try caller(of: request)
        return try await next(request, context)
    }

    func caller(of request: Request) throws -> Caller {
        if tokens.isEmpty { return .anonymous }
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("an Authorization: Bearer <token> header is required")
        }
        // The scheme is case-insensitive; compared byte by byte, as this runs on every request.
        let scheme = header.utf8.prefix(7)
        guard scheme.count == 7, zip(scheme, "bearer ".utf8).allSatisfy({ (65...90).contains($0) ? $0 | 0x20 == $1 : $0 == $1 }),
            let token = tokens.identify(Substring(header.utf8.dropFirst(7)))
        else {
            throw APIError.unauthorized("the bearer token is not valid")
        }
        return Caller(name: token.name, role: token.role, scope: token.scope)
    }
}

/// Lets through only callers of the given roles (admins always): 403 for the others.
struct RequireRole: RouterMiddleware {
    let roles: Set<AccessRole>

    init(_ roles: AccessRole...) {
        self.roles = Set(roles + [.admin])
    }

    func handle(
        _ request: Request, context: FulcrumRequestContext,
        next: (Request, FulcrumRequestContext) async throws -> Response
    ) async throws -> Response {
        guard let caller = context.caller else {
            throw APIError.unauthorized("an Authorization: Bearer <token> header is required")
        }
        guard roles.contains(caller.role) else {
            throw APIError(
                .forbidden, code: "forbidden",
                "this route needs a token of role \(roles.map(\.rawValue).sorted().joined(separator: " or ")); "
                    + "'\(caller.name)' has role \(caller.role.rawValue)")
        }
        return try await next(request, context)
    }
}

extension Caller {
    /// Whether this caller may speak for `worker`, of `unit` (nil: not known, the handler answers 404).
    func mayActFor(worker: String, unit: String?) -> Bool {
        switch scope {
        case nil: true
        case .worker(let id)?: id == worker
        case .units(let units)?: unit.map(units.contains) ?? true
        }
    }

    /// The units a scoped gateway or worker token may act in; nil for any.
    var units: Set<String>? {
        if case .units(let units)? = scope { return units }
        return nil
    }
}

extension APIError {
    /// A scoped token used outside its scope.
    static func outOfScope(_ caller: Caller, _ what: String) -> APIError {
        APIError(
            .forbidden, code: "out_of_scope",
            "token '\(caller.name)' is scoped to \(caller.scope.map { "\($0)" } ?? "everything") and may not act for \(what)")
    }

    static func unauthorized(_ message: String) -> APIError {
        var error = APIError(.unauthorized, code: "unauthorized", message)
        error.headers[.wwwAuthenticate] = #"Bearer realm="fulcrum""#
        return error
    }
}
