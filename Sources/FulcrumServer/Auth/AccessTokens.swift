import Crypto
import Foundation
import FulcrumCore

/// Who may call what: operators (`admin`), GPU workers (`worker`) and request gateways (`gateway`).
public enum AccessRole: String, Codable, Sendable, CaseIterable {
    case admin
    case worker
    case gateway
}

/// What a worker or gateway token may speak for. Without one a worker token may report for any worker and a
/// gateway token assign in any unit (kept working, and counted at start-up).
public enum TokenScope: Hashable, Sendable, CustomStringConvertible {
    /// One worker id: a worker token on one GPU host.
    case worker(String)
    /// Workers of these units (a worker token), or assignments in these units (a gateway token).
    case units(Set<String>)

    /// The configuration line's fourth part: `worker=ID` or `unit=ID[+ID…]`.
    public var description: String {
        switch self {
        case .worker(let id): "worker=\(id)"
        case .units(let units): "unit=" + units.sorted().joined(separator: "+")
        }
    }

    static func parse(_ text: String, role: AccessRole) -> Result<TokenScope, ScopeProblem> {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return .failure(ScopeProblem("the scope must be worker=ID or unit=ID[+ID...]")) }
        switch (parts[0], role) {
        case (_, .admin):
            return .failure(ScopeProblem("an admin token cannot be scoped"))
        case ("worker", .worker):
            guard (try? Identifier.validate(parts[1], field: "worker")) != nil else {
                return .failure(ScopeProblem("'\(parts[1])' is not a worker id"))
            }
            return .success(.worker(parts[1]))
        case ("worker", .gateway):
            return .failure(ScopeProblem("a gateway token is scoped to units (unit=ID[+ID...]), not to a worker"))
        case ("unit", _):
            let units = parts[1].split(separator: "+", omittingEmptySubsequences: false).map(String.init)
            guard units.allSatisfy({ (try? Identifier.validate($0, field: "unit")) != nil }) else {
                return .failure(ScopeProblem("unit=\(parts[1]): every unit must be a unit id, joined by +"))
            }
            return .success(.units(Set(units)))
        default:
            return .failure(ScopeProblem("the scope must be worker=ID or unit=ID[+ID...]"))
        }
    }

    struct ScopeProblem: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

/// A configured bearer token: a name for the audit trail and logs, a role, an optional scope, and the SHA-256 of
/// the token. The token itself is never stored, configured or logged.
public struct AccessToken: Hashable, Sendable {
    public var name: String
    public var role: AccessRole
    public var sha256: [UInt8]
    public var scope: TokenScope?

    public init(name: String, role: AccessRole, sha256: [UInt8], scope: TokenScope? = nil) {
        self.name = name
        self.role = role
        self.sha256 = sha256
        self.scope = scope
    }

    /// A token of `role` with this secret: how `fulcrum token` and the tests make one.
    public init(name: String, role: AccessRole, secret: String, scope: TokenScope? = nil) {
        self.init(name: name, role: role, sha256: Array(SHA256.hash(data: Data(secret.utf8))), scope: scope)
    }

    /// A new secret: `fulcrum_` and 43 URL-safe base64 characters (32 random bytes).
    public static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "fulcrum_"
            + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The line that configures this token: `name:role:sha256hex[:scope]`.
    public var line: String {
        "\(name):\(role.rawValue):" + sha256.map { String(format: "%02x", $0) }.joined() + (scope.map { ":\($0)" } ?? "")
    }

    /// Parses `name:role:sha256hex[:scope]` lines (a file's, or `FULCRUM_TOKENS` separated by commas or newlines); blank
    /// lines and lines starting with `#` are skipped. Problems name the line, never echo a hash.
    public static func parse(_ text: String, source: String) -> (tokens: [AccessToken], problems: [String]) {
        var tokens: [AccessToken] = []
        var problems: [String] = []
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "," }
        for (index, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            let entry = "\(source) entry \(index + 1)"
            guard parts.count == 3 || parts.count == 4 else {
                problems.append("\(entry) must be name:role:sha256hex[:scope] (make one with `fulcrum token`)")
                continue
            }
            let (name, roleText, hex) = (parts[0], parts[1], parts[2].lowercased())
            guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "._-@".contains($0) })
            else {
                problems.append("\(entry): the name must be 1-64 letters, digits or ._-@")
                continue
            }
            guard let role = AccessRole(rawValue: roleText) else {
                problems.append("\(entry) (\(name)): the role must be admin, worker or gateway")
                continue
            }
            guard hex.count == 64, let digest = bytes(hex: hex) else {
                problems.append(
                    "\(entry) (\(name)): the third part must be the token's SHA-256 as 64 hex digits, not the token")
                continue
            }
            var scope: TokenScope?
            if parts.count == 4 {
                switch TokenScope.parse(parts[3], role: role) {
                case .success(let parsed): scope = parsed
                case .failure(let problem):
                    problems.append("\(entry) (\(name)): \(problem.message)")
                    continue
                }
            }
            if tokens.contains(where: { $0.name == name }) {
                problems.append("\(entry): the name '\(name)' is used twice")
                continue
            }
            tokens.append(AccessToken(name: name, role: role, sha256: digest, scope: scope))
        }
        return (tokens, problems)
    }

    private static func bytes(hex: String) -> [UInt8]? {
        var result: [UInt8] = []
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            guard let h = nibble(high), let l = nibble(low) else { return nil }
            result.append(h << 4 | l)
        }
        return result
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}

/// The configured tokens, found by the SHA-256 of the presented one. A fleet with a scoped token per worker holds
/// thousands, so the lookup is a hash table rather than a scan. It tells an attacker nothing: what is looked up is
/// the digest of their own guess, and a near-miss guess has an unrelated digest; the final comparison takes the same
/// time whatever the bytes.
public struct TokenBook: Sendable {
    let tokens: [AccessToken]
    private let byDigest: [DigestKey: AccessToken]

    public init(_ tokens: [AccessToken]) {
        self.tokens = tokens
        // Configuration refuses duplicate names, not duplicate secrets: the last one configured wins (the file's over
        // FULCRUM_TOKENS', as the settings are applied in that order).
        byDigest = Dictionary(
            tokens.compactMap { token in token.sha256.withUnsafeBytes(DigestKey.init).map { ($0, token) } },
            uniquingKeysWith: { _, last in last })
    }

    public var isEmpty: Bool { tokens.isEmpty }

    public func identify(_ presented: some StringProtocol) -> AccessToken? {
        // Hashed where the header's bytes lie: this runs on every request, and copying the token into Data first
        // showed in profiles. Only a token not stored contiguously is copied.
        let digest =
            presented.utf8.withContiguousStorageIfAvailable { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
            ?? SHA256.hash(data: Array(presented.utf8))
        guard let key = digest.withUnsafeBytes(DigestKey.init), let token = byDigest[key] else { return nil }
        var difference: UInt8 = 0
        for (a, b) in zip(token.sha256, digest) { difference |= a ^ b }
        return difference == 0 ? token : nil
    }
}

/// A SHA-256 digest as a hash-table key: four words, built alike from a configured hash and a fresh digest.
struct DigestKey: Hashable, Sendable {
    let words: (UInt64, UInt64, UInt64, UInt64)

    init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 32 else { return nil }
        words = (
            bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        )
    }

    static func == (a: DigestKey, b: DigestKey) -> Bool { a.words == b.words }

    func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
