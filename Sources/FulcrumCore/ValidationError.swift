/// A value that breaks one of Fulcrum's rules, named by the field that holds it so an API caller can fix it.
public struct ValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Dotted path of the offending field, for example `model.expertGroups` or `capacity.kvTokens`.
    public var field: String
    public var message: String

    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// Identifiers of units and workers end up in URLs, SQL, logs and metrics labels, so they are kept short and plain.
public enum Identifier {
    public static let maxLength = 64

    public static func validate(_ id: String, field: String) throws(ValidationError) {
        if id.isEmpty {
            throw ValidationError(field: field, "must not be empty")
        }
        if id.utf8.count > maxLength {
            throw ValidationError(field: field, "must be at most \(maxLength) characters, got \(id.utf8.count)")
        }
        let allowed = id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
        if !allowed {
            throw ValidationError(field: field, "may contain only letters, digits, '.', '_' and '-'")
        }
        // Clients resolve these as path segments before a request is sent: such a unit or worker could be created
        // and never reached again.
        if id == "." || id == ".." {
            throw ValidationError(field: field, "must not be '.' or '..'")
        }
    }
}

extension ClosedRange where Bound == Int {
    /// Checks `value` against the range, naming the field and the range on failure.
    func check(_ value: Int, field: String) throws(ValidationError) {
        guard contains(value) else {
            throw ValidationError(field: field, "must be between \(lowerBound) and \(upperBound), got \(value)")
        }
    }
}
