import FulcrumCore
import Foundation
import Hummingbird
import NIOCore

/// One JSON dialect for the whole API: ISO 8601 dates with milliseconds, keys sorted so that responses diff well.
enum JSONCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(timestampStyle))
        }
        return encoder
    }()

    static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

/// The request context of every route: Fulcrum's JSON dialect for the bodies Hummingbird encodes.
public struct FulcrumRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by the authentication middleware of the /v1 routes.
    public var caller: Caller?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    public var responseEncoder: JSONEncoder { JSONCoding.encoder }
    public var requestDecoder: OneInputPath { OneInputPath() }
}

/// Every body is read through `parseJSON`. Hummingbird's own `request.decode(as:context:)` would take Foundation's
/// laxer syntax (duplicate keys, leading zeros), so it refuses, and a route that used it would fail its tests.
public struct OneInputPath: RequestDecoder {
    public func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        throw APIError(.internalServerError, code: "internal", "request bodies are read with parseJSON, not decode(as:)")
    }
}

extension Request {
    /// The whole body, refusing one over `limit` bytes (413).
    func collectBody(limit: Int) async throws -> ByteBuffer {
        do {
            return try await body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, code: "body_too_large", "request body is larger than \(limit) bytes")
        }
    }

    /// The whole body, refusing an empty one (400) and one over `limit` bytes (413).
    func nonEmptyBody(limit: Int) async throws -> ByteBuffer {
        let buffer = try await collectBody(limit: limit)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, code: "missing_body", "a JSON body is required")
        }
        return buffer
    }
}

extension Request {
    /// Reads a body with Fulcrum's own JSON parser and hands the parsed value to `read`: the one input path of every
    /// body, strict (invalid UTF-8, duplicate keys, leading zeros and U+0000 are 400 `malformed_json`) and fast
    /// enough for the hot routes. `read` names the field of every shape error.
    /// With `emptyIsObject`, a body that is absent or only whitespace reads as `{}` (operators' action bodies are
    /// optional).
    func parseJSON<Body>(limit: Int, emptyIsObject: Bool = false, _ read: (JSONValue) throws(JSONInputError) -> Body)
        async throws -> Body
    {
        let buffer = try await emptyIsObject ? collectBody(limit: limit) : nonEmptyBody(limit: limit)
        let value: JSONValue
        do {
            value =
                emptyIsObject && buffer.readableBytesView.allSatisfy({ [9, 10, 13, 32].contains($0) })
                ? .object([:]) : try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw APIError(.badRequest, code: "malformed_json", "body is not valid JSON: \(error.message) at byte \(error.offset)")
        }
        do {
            return try read(value)
        } catch {
            throw APIError(error)
        }
    }
}

extension APIError {
    /// A body that does not fit its route's shape: 400 with the reader's code and field.
    init(_ error: JSONInputError) {
        self.init(.badRequest, code: error.code, error.message, field: error.field)
    }
}

extension JSONObjectReader {
    /// The optional `reason` of an operator's action, for the audit trail.
    func reason() throws(JSONInputError) -> String? {
        let reason = try optionalString("reason")
        if let reason, reason.count > AuditEntry.maxReasonLength {
            throw JSONInputError(
                code: "invalid_field", field: "reason", message: "reason must be at most \(AuditEntry.maxReasonLength) characters")
        }
        return reason
    }
}
