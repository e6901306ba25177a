import Foundation

/// Why a parsed body does not fit the shape a route expects; `code` is the API error code.
public struct JSONInputError: Error, Hashable, Sendable {
    public var code: String
    public var field: String?
    public var message: String

    public init(code: String, field: String?, message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    public static func missing(_ field: String) -> JSONInputError {
        JSONInputError(code: "missing_field", field: field, message: "\(field) is required")
    }

    public static func type(_ field: String, _ expected: String) -> JSONInputError {
        JSONInputError(
            code: "invalid_type", field: field.isEmpty ? nil : field,
            message: "\(field.isEmpty ? "body" : field) must be \(expected)")
    }
}

/// Typed access to a parsed object, naming the field path in every error.
public struct JSONObjectReader {
    let members: [String: JSONValue]
    let path: String

    public init(_ value: JSONValue, path: String = "") throws(JSONInputError) {
        guard case .object(let members) = value else { throw .type(path, "an object") }
        self.members = members
        self.path = path
    }

    func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// nil for an absent or null member.
    func member(_ key: String) -> JSONValue? {
        switch members[key] {
        case .none, .null?: nil
        case .some(let value): value
        }
    }

    public func int(_ key: String) throws(JSONInputError) -> Int {
        guard let value = member(key) else { throw .missing(field(key)) }
        guard case .int(let int) = value else { throw Self.notInt(field(key)) }
        return int
    }

    /// Refuses members other than `known`: where a misspelt optional field would silently change what happens (a
    /// `dry_run` that publishes, a `cachedToken` that drops the cache), a typo must be an error.
    public func rejectUnknown(_ known: Set<String>) throws(JSONInputError) {
        if let key = members.keys.filter({ !known.contains($0) }).min() {
            throw JSONInputError(
                code: "unknown_field", field: field(key),
                message: "\(field(key)) is not a field here; expected one of \(known.sorted().joined(separator: ", "))")
        }
    }

    /// nil when absent.
    public func optionalInt(_ key: String) throws(JSONInputError) -> Int? {
        member(key) == nil ? nil : try int(key)
    }

    /// nil when absent.
    public func optionalBool(_ key: String) throws(JSONInputError) -> Bool? {
        switch member(key) {
        case nil: return nil
        case .bool(let value)?: return value
        default: throw .type(field(key), "true or false")
        }
    }

    /// A number, whole or not; nil when absent.
    public func optionalNumber(_ key: String) throws(JSONInputError) -> Double? {
        switch member(key) {
        case nil: return nil
        case .int(let value)?: return Double(value)
        case .double(let value)?: return value
        default: throw .type(field(key), "a number")
        }
    }

    /// The objects of an array member, each a reader whose errors name `key[i]`.
    public func objects(_ key: String) throws(JSONInputError) -> [JSONObjectReader] {
        guard let value = member(key) else { throw .missing(field(key)) }
        guard case .array(let items) = value else { throw .type(field(key), "an array of objects") }
        var readers: [JSONObjectReader] = []
        readers.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            readers.append(try JSONObjectReader(item, path: "\(field(key))[\(index)]"))
        }
        return readers
    }

    public func string(_ key: String) throws(JSONInputError) -> String {
        guard let value = member(key) else { throw .missing(field(key)) }
        guard case .string(let text) = value else { throw .type(field(key), "a string") }
        return text
    }

    /// nil when absent.
    public func optionalString(_ key: String) throws(JSONInputError) -> String? {
        member(key) == nil ? nil : try string(key)
    }

    public func date(_ key: String) throws(JSONInputError) -> Date {
        let text = try string(key)
        guard let date = ISO8601.parse(text) else {
            throw JSONInputError(
                code: "invalid_field", field: field(key),
                message: "\(field(key)) must be an ISO 8601 timestamp such as 2025-02-28T12:00:00Z")
        }
        return date
    }

    /// One of an enum's values, refused with the list of accepted ones.
    public func choice<Value: StrictEnum>(_ key: String, _ type: Value.Type) throws(JSONInputError) -> Value {
        let raw = try string(key)
        guard let value = Value(rawValue: raw) else {
            throw JSONInputError(
                code: "invalid_field", field: field(key),
                message: "\(field(key)) must be one of \(Value.allCases.map(\.rawValue).joined(separator: ", ")), got '\(raw)'")
        }
        return value
    }

    /// A member that must be an object.
    public func requiredObject(_ key: String) throws(JSONInputError) -> JSONObjectReader {
        guard let object = try object(key) else { throw .missing(field(key)) }
        return object
    }

    public func object(_ key: String) throws(JSONInputError) -> JSONObjectReader? {
        guard let value = member(key) else { return nil }
        return try JSONObjectReader(value, path: field(key))
    }

    public func intMatrix(_ key: String) throws(JSONInputError) -> [[Int]] {
        guard let value = member(key) else { throw .missing(field(key)) }
        guard case .array(let rows) = value else { throw .type(field(key), "an array of arrays of whole numbers") }
        var matrix: [[Int]] = []
        matrix.reserveCapacity(rows.count)
        for (r, row) in rows.enumerated() {
            guard case .array(let cells) = row else { throw .type("\(field(key))[\(r)]", "an array of whole numbers") }
            var ints: [Int] = []
            ints.reserveCapacity(cells.count)
            // The field path is built only for an error: building it per cell cost more than the parse.
            for (c, cell) in cells.enumerated() {
                guard case .int(let int) = cell else { throw Self.notInt("\(field(key))[\(r)][\(c)]") }
                ints.append(int)
            }
            matrix.append(ints)
        }
        return matrix
    }

    public func strings(_ key: String) throws(JSONInputError) -> [String]? {
        guard let value = member(key) else { return nil }
        guard case .array(let items) = value else { throw .type(field(key), "an array of strings") }
        var strings: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let text) = item else { throw .type("\(field(key))[\(i)]", "a string") }
            strings.append(text)
        }
        return strings
    }

    public func ints(_ key: String) throws(JSONInputError) -> [Int]? {
        guard let value = member(key) else { return nil }
        guard case .array(let items) = value else { throw .type(field(key), "an array of whole numbers") }
        var ints: [Int] = []
        for (i, item) in items.enumerated() {
            guard case .int(let int) = item else { throw Self.notInt("\(field(key))[\(i)]") }
            ints.append(int)
        }
        return ints
    }

    static func notInt(_ field: String) -> JSONInputError {
        .type(field, "a whole number that fits in 64 bits")
    }
}

/// RFC 3339 timestamps (`2025-02-28T12:00:00Z`, `…:00.250+08:00`), parsed without a formatter: every
/// telemetry report carries one.
public enum ISO8601 {
    public static func parse(_ text: String) -> Date? {
        var utf8 = Array(text.utf8)
        return utf8.withUnsafeMutableBufferPointer { parse($0) }
    }

    private static func parse(_ b: UnsafeMutableBufferPointer<UInt8>) -> Date? {
        func digits(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= b.count else { return nil }
            var value = 0
            for i in start..<(start + count) {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) else { return nil }
                value = value * 10 + Int(b[i] - UInt8(ascii: "0"))
            }
            return value
        }
        guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
            b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
            b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
            let year = digits(0, 4), let month = digits(5, 2), let day = digits(8, 2),
            let hour = digits(11, 2), let minute = digits(14, 2), let second = digits(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < b.count, b[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[index]) {
                fraction += Double(b[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < b.count else { return nil }
        var offset = 0
        switch b[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let hours = digits(index + 1, 2), index + 3 < b.count, b[index + 3] == UInt8(ascii: ":"),
                let minutes = digits(index + 4, 2)
            else { return nil }
            offset = (hours * 3_600 + minutes * 60) * (b[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        default:
            return nil
        }
        guard index == b.count else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm), then seconds since 1970.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = Double(days * 86_400 + hour * 3_600 + minute * 60 + second - offset) + fraction
        return Date(timeIntervalSince1970: seconds)
    }
}

extension TelemetryReport {
    /// Reads a report from a parsed body; every error names its field.
    public init(json: JSONValue) throws(JSONInputError) {
        let root = try JSONObjectReader(json)
        seq = try root.int("seq")
        sentAt = try root.date("sentAt")
        if let prefill = try root.object("prefill") {
            self.prefill = PrefillLoad(
                queuedTokens: try prefill.int("queuedTokens"), queuedRequests: try prefill.int("queuedRequests"),
                attentionWork: try prefill.int("attentionWork"))
        }
        if let decode = try root.object("decode") {
            self.decode = DecodeLoad(
                kvTokensUsed: try decode.int("kvTokensUsed"), kvTokensCapacity: try decode.int("kvTokensCapacity"),
                runningRequests: try decode.int("runningRequests"),
                tokensPerSecond: try decode.optionalNumber("tokensPerSecond"))
        }
        if let experts = try root.object("experts") {
            self.experts = ExpertWindow(
                windowStart: try experts.date("windowStart"), windowEnd: try experts.date("windowEnd"),
                slotTokens: try experts.intMatrix("slotTokens"))
        }
        finished = try root.strings("finished")
        admitted = try root.strings("admitted")
    }
}
