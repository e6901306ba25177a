import Foundation

/// Fulcrum's OpenAPI document, loaded for tests: finds the operation of a concrete request and checks a response
/// body against the schema the document declares for it. Supports the JSON Schema subset the document uses:
/// `$ref` (to `#/...`), `type` (one or several), `properties`, `required`, `additionalProperties`, `items`,
/// `enum`, `const`, `oneOf`, `anyOf`, `allOf`, `not`, `minimum`, `maximum`, `exclusiveMinimum`,
/// `exclusiveMaximum`, `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern` and `format: date-time`.
/// Immutable after `init`, so it may be shared between tests.
struct OpenAPIDocument: @unchecked Sendable {
    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    /// The parsed document.
    let root: [String: Any]
    private let paths: [String: [String: Any]]

    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    init(data: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadError(description: "the document is not a JSON object")
        }
        guard let paths = root["paths"] as? [String: Any] else {
            throw LoadError(description: "the document has no paths object")
        }
        var items: [String: [String: Any]] = [:]
        for (template, item) in paths {
            guard let item = item as? [String: Any] else {
                throw LoadError(description: "paths[\(template)] is not an object")
            }
            items[template] = item
        }
        self.root = root
        self.paths = items
    }

    /// Every (method, template) pair in the document, ordered by template, then method.
    var operations: [(method: String, template: String)] {
        paths.keys.sorted().flatMap { template in
            Self.methods.filter { paths[template]?[$0] is [String: Any] }.map { (method: $0, template: template) }
        }
    }

    /// The operation matching a concrete path such as "/v1/units/u1/placements/3" (templates like {unit} match one
    /// segment) and method ("get", "post", ...); nil when none. A query string is ignored. When several templates
    /// match, the one with literal segments earliest wins (`/v1/requests/finished` over `/v1/requests/{id}`).
    func operation(method: String, path: String) -> (template: String, operation: [String: Any])? {
        let method = method.lowercased()
        let segments = Self.segments(of: path)
        var best: (template: String, operation: [String: Any], score: [Bool])?
        for (template, item) in paths {
            guard let operation = item[method] as? [String: Any] else { continue }
            let pattern = Self.segments(of: template)
            guard pattern.count == segments.count else { continue }
            var score: [Bool] = []
            var matches = true
            for (expected, actual) in zip(pattern, segments) {
                if expected.hasPrefix("{") && expected.hasSuffix("}") {
                    guard !actual.isEmpty else {
                        matches = false
                        break
                    }
                    score.append(false)
                } else if expected == actual {
                    score.append(true)
                } else {
                    matches = false
                    break
                }
            }
            guard matches else { continue }
            if let current = best, !Self.moreSpecific(score, than: current.score) { continue }
            best = (template, operation, score)
        }
        return best.map { ($0.template, $0.operation) }
    }

    /// Violations of the response body (parsed with JSONSerialization, fragments allowed; nil for no body) against
    /// the schema declared for this status (falling back to "4XX"-style ranges, then "default"); an undeclared
    /// status is a violation. Content considered: application/json; for a text/plain-only response only the
    /// status is checked.
    func validateResponse(method: String, path: String, status: Int, body: Any?) -> [String] {
        guard let (template, operation) = operation(method: method, path: path) else {
            return ["no operation for \(method.uppercased()) \(path)"]
        }
        let where_ = "\(method.uppercased()) \(template)"
        guard let responses = operation["responses"] as? [String: Any] else {
            return ["\(where_) declares no responses"]
        }
        let declared =
            responses[String(status)] ?? responses["\(status / 100)XX"] ?? responses["\(status / 100)xx"]
            ?? responses["default"]
        guard let declared else {
            let known = responses.keys.sorted().joined(separator: ", ")
            return ["status \(status) is not declared for \(where_) (declared: \(known))"]
        }
        guard let response = resolve(declared) as? [String: Any] else {
            return ["the response for status \(status) of \(where_) is not an object"]
        }
        let content = response["content"] as? [String: Any] ?? [:]
        let jsonKey = content.keys.first { $0.lowercased().hasPrefix("application/json") }
        guard let jsonKey else {
            if content.isEmpty, let body, !(body is NSNull) {
                return ["status \(status) of \(where_) declares no body, but one was returned"]
            }
            return []
        }
        guard let body else {
            return ["status \(status) of \(where_) declares a JSON body, but none was returned"]
        }
        guard let media = content[jsonKey] as? [String: Any], let schema = media["schema"] else { return [] }
        return validate(body, against: schema)
    }

    /// Violations of `value` against the schema `#/components/schemas/<name>`.
    func validate(_ value: Any, schemaNamed name: String) -> [String] {
        validate(value, against: ["$ref": "#/components/schemas/\(name)"])
    }

    /// Violations of `value` against `schema` (a schema object or boolean), each prefixed with its JSON path.
    func validate(_ value: Any, against schema: Any, path: String = "$") -> [String] {
        var violations: [String] = []
        check(value, schema, path, depth: 0, into: &violations)
        return violations
    }

    // MARK: - References

    /// The value a `#/a/b` pointer names; nil when it names nothing.
    func pointer(_ reference: String) -> Any? {
        guard reference.hasPrefix("#") else { return nil }
        var node: Any = root
        for raw in reference.dropFirst().split(separator: "/", omittingEmptySubsequences: true) {
            let token = String(raw).replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let object = node as? [String: Any], let next = object[token] {
                node = next
            } else if let array = node as? [Any], let index = Int(token), array.indices.contains(index) {
                node = array[index]
            } else {
                return nil
            }
        }
        return node
    }

    /// Follows `$ref` chains of objects that are nothing but a reference (responses, headers, parameters).
    private func resolve(_ node: Any, depth: Int = 0) -> Any? {
        guard depth < 32, let object = node as? [String: Any], let reference = object["$ref"] as? String else {
            return node
        }
        return pointer(reference).flatMap { resolve($0, depth: depth + 1) }
    }

    // MARK: - Schemas

    private func check(_ value: Any, _ schema: Any, _ path: String, depth: Int, into violations: inout [String]) {
        guard depth < 64 else {
            violations.append("\(path): schema nesting too deep (a $ref cycle?)")
            return
        }
        if let allowed = schema as? Bool, Self.isBool(schema) {
            if !allowed { violations.append("\(path): no value is allowed here") }
            return
        }
        guard let schema = schema as? [String: Any] else {
            violations.append("\(path): invalid schema")
            return
        }
        if let reference = schema["$ref"] as? String {
            guard let target = pointer(reference) else {
                violations.append("\(path): unresolvable $ref \(reference)")
                return
            }
            check(value, target, path, depth: depth + 1, into: &violations)
        }
        let kind = JSONKind(value)

        if let types = schema["type"] {
            let names = (types as? [Any])?.compactMap { $0 as? String } ?? [(types as? String) ?? ""]
            guard names.contains(where: { kind.conforms(to: $0) }) else {
                let expected = names.joined(separator: " or ")
                violations.append("\(path): expected \(expected), got \(kind.name) \(Self.describe(value))")
                return
            }
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { Self.equal($0, value) }) {
            violations.append("\(path): \(Self.describe(value)) not in enum")
        }
        if let constant = schema["const"], !Self.equal(constant, value) {
            violations.append("\(path): \(Self.describe(value)) is not \(Self.describe(constant))")
        }

        switch kind {
        case .number(let number, _):
            if let minimum = Self.number(schema["minimum"]), number < minimum {
                violations.append("\(path): \(Self.describe(value)) is less than the minimum \(Self.describe(schema["minimum"]!))")
            }
            if let maximum = Self.number(schema["maximum"]), number > maximum {
                violations.append("\(path): \(Self.describe(value)) is more than the maximum \(Self.describe(schema["maximum"]!))")
            }
            if let bound = Self.number(schema["exclusiveMinimum"]), number <= bound {
                violations.append("\(path): \(Self.describe(value)) must be more than \(Self.describe(schema["exclusiveMinimum"]!))")
            }
            if let bound = Self.number(schema["exclusiveMaximum"]), number >= bound {
                violations.append("\(path): \(Self.describe(value)) must be less than \(Self.describe(schema["exclusiveMaximum"]!))")
            }
        case .string(let string):
            let length = string.count
            if let minimum = schema["minLength"] as? Int, length < minimum {
                violations.append("\(path): \(Self.describe(value)) is shorter than \(minimum) characters")
            }
            if let maximum = schema["maxLength"] as? Int, length > maximum {
                violations.append("\(path): \(Self.describe(value)) is longer than \(maximum) characters")
            }
            if let pattern = schema["pattern"] as? String {
                if let regex = try? NSRegularExpression(pattern: pattern) {
                    let range = NSRange(string.startIndex..., in: string)
                    if regex.firstMatch(in: string, range: range) == nil {
                        violations.append("\(path): \(Self.describe(value)) does not match \(pattern)")
                    }
                } else {
                    violations.append("\(path): invalid pattern \(pattern) in the schema")
                }
            }
            if schema["format"] as? String == "date-time", !Self.isDateTime(string) {
                violations.append("\(path): \(Self.describe(value)) is not an ISO 8601 date-time")
            }
        case .array(let elements):
            if let minimum = schema["minItems"] as? Int, elements.count < minimum {
                violations.append("\(path): \(elements.count) items, fewer than minItems \(minimum)")
            }
            if let maximum = schema["maxItems"] as? Int, elements.count > maximum {
                violations.append("\(path): \(elements.count) items, more than maxItems \(maximum)")
            }
            if let items = schema["items"] {
                for (index, element) in elements.enumerated() {
                    check(element, items, "\(path)[\(index)]", depth: depth + 1, into: &violations)
                }
            }
        case .object(let members):
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for name in (schema["required"] as? [Any])?.compactMap({ $0 as? String }) ?? []
            where members[name] == nil {
                violations.append("\(path): missing required member \"\(name)\"")
            }
            for name in members.keys.sorted() {
                let member = members[name]!
                let memberPath = Self.member(path, name)
                if let property = properties[name] {
                    check(member, property, memberPath, depth: depth + 1, into: &violations)
                } else if let additional = schema["additionalProperties"] {
                    if let allowed = additional as? Bool, Self.isBool(additional) {
                        if !allowed { violations.append("\(path): unexpected member \"\(name)\"") }
                    } else {
                        check(member, additional, memberPath, depth: depth + 1, into: &violations)
                    }
                }
            }
        case .null, .bool:
            break
        }

        if let all = schema["allOf"] as? [Any] {
            for sub in all { check(value, sub, path, depth: depth + 1, into: &violations) }
        }
        if let any = schema["anyOf"] as? [Any] {
            let results = any.map { sub in
                var found: [String] = []
                check(value, sub, path, depth: depth + 1, into: &found)
                return found
            }
            if !results.contains(where: \.isEmpty) {
                violations.append("\(path): matches none of anyOf (\(Self.summary(results)))")
            }
        }
        if let one = schema["oneOf"] as? [Any] {
            let results = one.map { sub in
                var found: [String] = []
                check(value, sub, path, depth: depth + 1, into: &found)
                return found
            }
            let matched = results.filter(\.isEmpty).count
            if matched == 0 {
                violations.append("\(path): matches none of oneOf (\(Self.summary(results)))")
            } else if matched > 1 {
                violations.append("\(path): matches \(matched) schemas of oneOf, exactly one expected")
            }
        }
        if let not = schema["not"] {
            var found: [String] = []
            check(value, not, path, depth: depth + 1, into: &found)
            if found.isEmpty { violations.append("\(path): matches a schema under not") }
        }
    }

    // MARK: - JSON values

    /// A parsed JSON value. JSONSerialization gives NSNumber for numbers and booleans alike; booleans are the ones
    /// whose objCType is "c" (also on Linux, where `is Bool` holds for the numbers 0 and 1 too).
    private enum JSONKind {
        case null
        case bool(Bool)
        /// The value and whether it is a whole number.
        case number(Double, whole: Bool)
        case string(String)
        case array([Any])
        case object([String: Any])

        init(_ value: Any) {
            if value is NSNull {
                self = .null
            } else if let string = value as? String {
                self = .string(string)
            } else if let number = value as? NSNumber {
                if OpenAPIDocument.isBool(number) {
                    self = .bool(number.boolValue)
                } else {
                    let type = String(cString: number.objCType)
                    let double = number.doubleValue
                    let whole = (type != "d" && type != "f") || (double.isFinite && double.rounded() == double)
                    self = .number(double, whole: whole)
                }
            } else if let array = value as? [Any] {
                self = .array(array)
            } else if let object = value as? [String: Any] {
                self = .object(object)
            } else {
                self = .string(String(describing: value))
            }
        }

        var name: String {
            switch self {
            case .null: "null"
            case .bool: "boolean"
            case .number(_, let whole): whole ? "integer" : "number"
            case .string: "string"
            case .array: "array"
            case .object: "object"
            }
        }

        func conforms(to type: String) -> Bool {
            switch (type, self) {
            case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string), ("array", .array),
                ("object", .object):
                true
            case ("integer", .number(_, let whole)):
                whole
            default:
                false
            }
        }
    }

    fileprivate static func isBool(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }

    private static func number(_ value: Any?) -> Double? {
        guard let value, !isBool(value), let number = value as? NSNumber else { return nil }
        return number.doubleValue
    }

    /// JSON equality: numbers by value, booleans only with booleans, objects and arrays member by member.
    static func equal(_ a: Any, _ b: Any) -> Bool {
        switch (JSONKind(a), JSONKind(b)) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x, _), .number(let y, _)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { key, value in y[key].map { equal(value, $0) } ?? false }
        default: false
        }
    }

    private static func isDateTime(_ string: String) -> Bool {
        let pattern = #"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"#
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: string, range: NSRange(string.startIndex..., in: string)) != nil
    }

    private static func member(_ path: String, _ name: String) -> String {
        let plain = !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
        return plain ? "\(path).\(name)" : "\(path)[\(describe(name))]"
    }

    /// A short JSON rendering of a value for messages.
    static func describe(_ value: Any) -> String {
        var text: String
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]),
            let json = String(data: data, encoding: .utf8)
        {
            text = json
        } else {
            text = String(describing: value)
        }
        if text.count > 80 { text = String(text.prefix(77)) + "..." }
        return text
    }

    private static func summary(_ results: [[String]]) -> String {
        results.enumerated().map { index, found in "#\(index): \(found.first ?? "ok")" }.joined(separator: "; ")
    }

    private static func segments(of path: String) -> [String] {
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        return bare.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    /// Whether `a` has a literal segment where `b` first has a template.
    private static func moreSpecific(_ a: [Bool], than b: [Bool]) -> Bool {
        for (x, y) in zip(a, b) where x != y { return x }
        return false
    }
}
