import Crypto
import Foundation

/// Who may call what: operators (`admin`), GPU workers (`worker`) and request gateways (`gateway`).
public enum AccessRole: String, Codable, Sendable, CaseIterable {
    case admin
    case worker
    case gateway
}

/// A configured bearer token: a name for the audit trail and logs, a role, and the SHA-256 of the token. The token
/// itself is never stored, configured or logged.
public struct AccessToken: Hashable, Sendable {
    public var name: String
    public var role: AccessRole
    public var sha256: [UInt8]

    public init(name: String, role: AccessRole, sha256: [UInt8]) {
        self.name = name
        self.role = role
        self.sha256 = sha256
    }

    /// A token of `role` with this secret: how `fulcrum token` and the tests make one.
    public init(name: String, role: AccessRole, secret: String) {
        self.init(name: name, role: role, sha256: Array(SHA256.hash(data: Data(secret.utf8))))
    }

    /// A new secret: `fulcrum_` and 43 URL-safe base64 characters (32 random bytes).
    public static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "fulcrum_"
            + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The line that configures this token: `name:role:sha256hex`.
    public var line: String {
        "\(name):\(role.rawValue):" + sha256.map { String(format: "%02x", $0) }.joined()
    }

    /// Parses `name:role:sha256hex` lines (a file's, or `FULCRUM_TOKENS` separated by commas or newlines); blank
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
            guard parts.count == 3 else {
                problems.append("\(entry) must be name:role:sha256hex (make one with `fulcrum token`)")
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
            if tokens.contains(where: { $0.name == name }) {
                problems.append("\(entry): the name '\(name)' is used twice")
                continue
            }
            tokens.append(AccessToken(name: name, role: role, sha256: digest))
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

/// The configured tokens, looked up in constant time: the presented token is hashed and compared with every
/// configured hash in full, so neither the comparison nor the search tells an attacker how close a guess came.
public struct TokenBook: Sendable {
    let tokens: [AccessToken]

    public init(_ tokens: [AccessToken]) {
        self.tokens = tokens
    }

    public var isEmpty: Bool { tokens.isEmpty }

    public func identify(_ presented: some StringProtocol) -> AccessToken? {
        let digest = Array(SHA256.hash(data: Data(presented.utf8)))
        var found: AccessToken?
        for token in tokens {
            var difference: UInt8 = 0
            for (a, b) in zip(token.sha256, digest) { difference |= a ^ b }
            if difference == 0, token.sha256.count == digest.count { found = token }
        }
        return found
    }
}
