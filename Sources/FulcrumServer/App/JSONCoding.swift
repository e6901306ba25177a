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

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            // With or without fractional seconds: clients differ.
            if let date = (try? timestampStyle.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text)) {
                return date
            }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected an ISO 8601 timestamp such as 2025-02-28T12:00:00Z")
        }
        return decoder
    }()

    static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// The path of the first number in a parsed JSON value that is not a 64-bit whole number.
    static func firstNonInteger(in value: Any, path: String = "") -> String? {
        switch value {
        case let object as [String: Any]:
            for key in object.keys.sorted() {
                if let found = firstNonInteger(in: object[key] as Any, path: path.isEmpty ? key : "\(path).\(key)") {
                    return found
                }
            }
        case let array as [Any]:
            for (index, element) in array.enumerated() {
                if let found = firstNonInteger(in: element, path: "\(path)[\(index)]") { return found }
            }
        case is Bool, is String:
            break
        case let number as NSNumber:
            let double = number.doubleValue
            if double.rounded() != double || abs(double) >= 9.2e18 { return path }
        default:
            break
        }
        return nil
    }
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
    public var requestDecoder: JSONDecoder { JSONCoding.decoder }
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

    /// Reads and decodes a JSON body, turning every way it can be wrong into a 4xx that names the field.
    func decodeJSON<Body: Decodable>(_ type: Body.Type, limit: Int) async throws -> Body {
        let buffer = try await nonEmptyBody(limit: limit)
        // One syntax for every body, whichever reader decodes it: Fulcrum's parser refuses invalid UTF-8, leading
        // zeros and duplicate keys, which Foundation would decode somehow.
        do {
            _ = try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw APIError(.badRequest, code: "malformed_json", "body is not valid JSON: \(error.message) at byte \(error.offset)")
        }
        let data = Data(buffer.readableBytesView)
        do {
            return try JSONCoding.decoder.decode(Body.self, from: data)
        } catch let error as DecodingError {
            // Foundation reports a number that does not fit the field's type (1e30 or 2.5 for a count) as
            // invalid JSON with no path; find the number so the caller learns which field is wrong.
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                let json = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
                let field = JSONCoding.firstNonInteger(in: json)
            {
                throw APIError(
                    .badRequest, code: "invalid_type", "\(field) must be a whole number that fits in 64 bits",
                    field: field)
            }
            throw APIError(decoding: error)
        }
    }
}

extension Request {
    /// Reads a body with Fulcrum's own JSON parser and hands the parsed value to `read`: for the hot routes, where
    /// Codable decoding cost too much CPU. Errors are the same 4xx as `decodeJSON`'s.
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

extension APIError {
    init(decoding error: DecodingError) {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            (codingPath + (last.map { [$0] } ?? [])).reduce(into: "") { path, key in
                if let index = key.intValue {
                    path += "[\(index)]"
                } else {
                    path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath, key)
            self.init(.badRequest, code: "missing_field", "\(field) is required", field: field)
        case .valueNotFound(_, let context):
            let field = path(context.codingPath)
            self.init(.badRequest, code: "missing_field", "\(field) must not be null", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            self.init(
                .badRequest, code: "invalid_type", "\(field.isEmpty ? "body" : field) must be \(Self.describe(type))",
                field: field.isEmpty ? nil : field)
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            self.init(.badRequest, code: "malformed_json", "body is not valid JSON")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            self.init(
                .badRequest, code: "invalid_field", "\(field): \(context.debugDescription)", field: field)
        @unknown default:
            self.init(.badRequest, code: "malformed_json", "body could not be decoded")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "a whole number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Double.Type: "a number"
        default: "\(type)".hasPrefix("Array") ? "an array" : "an object"
        }
    }
}
