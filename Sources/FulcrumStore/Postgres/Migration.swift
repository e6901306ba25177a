import Crypto
import Foundation

/// One numbered schema change from Migrations/, shipped inside the binary as a resource.
public struct Migration: Hashable, Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// SHA-256 of the file, so that an edited, already-applied migration is caught at start-up.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

public enum MigrationError: Error, Hashable, Sendable, CustomStringConvertible {
    case missingResources
    case badFileName(String)
    case notContiguous(expected: Int, found: String)
    case checksumMismatch(version: Int, name: String, recorded: String, current: String)
    case failed(version: Int, name: String, statement: Int, reason: String)

    public var description: String {
        switch self {
        case .missingResources:
            "no migrations found: the resource bundle fulcrum_FulcrumStore.resources must sit next to the executable"
        case .badFileName(let file):
            "migration file '\(file)' is not named NNNN_name.sql"
        case .notContiguous(let expected, let found):
            "migrations must be numbered 1, 2, 3 … without gaps; expected \(expected), found '\(found)'"
        case .checksumMismatch(let version, let name, let recorded, let current):
            "migration \(version) (\(name)) was changed after it was applied: recorded checksum \(recorded), "
                + "file now \(current). Applied migrations must never be edited; add a new one instead"
        case .failed(let version, let name, let statement, let reason):
            "migration \(version) (\(name)) failed at statement \(statement): \(reason)"
        }
    }
}

extension Migration {
    /// The migrations bundled with this build, in order. Sources/FulcrumStore/Migrations links to the top-level
    /// Migrations/, whose files SwiftPM copies into the target's resource bundle beside the executable.
    ///
    /// The bundle is looked up here rather than through `Bundle.module`, whose generated accessor traps when the
    /// bundle is missing (a deployment that copied only the binary); this says what is wrong instead.
    public static func bundled() throws -> [Migration] {
        let name = "fulcrum_FulcrumStore.resources"
        let executableDirectory = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        let candidates = [Bundle.main.bundleURL, executableDirectory].map { $0.appendingPathComponent(name) }
        guard let directory = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw MigrationError.missingResources
        }
        let migrations = try load(from: directory)
        guard !migrations.isEmpty else { throw MigrationError.missingResources }
        return migrations
    }

    /// Reads `NNNN_name.sql` files from a directory; numbering must start at 1 and have no gaps.
    public static func load(from directory: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".sql") }
            .sorted()
        var migrations: [Migration] = []
        for (index, file) in files.enumerated() {
            let stem = file.dropLast(".sql".count)
            let parts = stem.split(separator: "_", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 4, let version = Int(parts[0]) else {
                throw MigrationError.badFileName(file)
            }
            guard version == index + 1 else {
                throw MigrationError.notContiguous(expected: index + 1, found: file)
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            migrations.append(Migration(version: version, name: String(parts[1]), sql: sql))
        }
        return migrations
    }
}
