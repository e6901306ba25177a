import Foundation
#if canImport(Glibc)
import Glibc
#endif
import FulcrumStore

/// A PostgreSQL server of one test's own, which the test stops and starts (an outage, a database that is down at
/// start-up). The shared server of DATABASE_URL cannot be stopped: every other suite runs on it at the same time.
///
/// Uses Debian's binaries (`scripts/test` installs them); as root, the cluster belongs to the `postgres` user, as
/// PostgreSQL refuses to run as root. Blocking calls: run them off the cooperative pool (`offPool`).
public final class PrivatePostgres: Sendable {
    public let url: DatabaseURL
    let directory: URL
    let binaries: URL
    let port: Int
    let asOwner: [String]

    /// Debian's newest PostgreSQL, if installed.
    public static let binaryDirectory: URL? = {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return versions.compactMap(Int.init).sorted().last.map {
            root.appendingPathComponent("\($0)/bin")
        }.flatMap { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("initdb").path) ? $0 : nil }
    }()

    public static var available: Bool { binaryDirectory != nil }

    /// initdb into a new temporary directory and start on a free port.
    public init() throws {
        guard let binaries = Self.binaryDirectory else { throw Unavailable() }
        self.binaries = binaries
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fulcrum-private-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if getuid() == 0 {
            asOwner = ["/usr/sbin/runuser", "-u", "postgres", "--"]
            try Self.run(["/bin/chown", "postgres:postgres", directory.path], as: [])
        } else {
            asOwner = []
        }
        port = try Self.freePort()
        url = try DatabaseURL("postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable")
        try Self.run(
            [binaries.appendingPathComponent("initdb").path, "-D", directory.appendingPathComponent("data").path, "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--no-sync"], as: asOwner)
        try start()
    }

    public func start() throws {
        let log = directory.appendingPathComponent("server.log")
        do {
            try Self.run(
                [binaries.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("data").path, "-l",
                 log.path, "-w", "-t", "60", "-o",
                 "-p \(port) -k \(directory.path) -c listen_addresses=127.0.0.1 -c fsync=off", "start"], as: asOwner)
        } catch let failure as CommandFailed {
            // pg_ctl says only "could not start server": the server's own log says why.
            let server = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(8)
            throw CommandFailed(description: failure.description + "\nserver log:\n" + server.joined(separator: "\n"))
        }
    }

    /// `pg_ctl stop -m fast`: sessions are ended at once and the port closes, as when a primary goes away.
    public func stop() throws {
        try Self.run(
            [binaries.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("data").path, "-m", "fast",
             "-w", "stop"], as: asOwner)
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public struct Unavailable: Error {}
    public struct CommandFailed: Error, CustomStringConvertible {
        public var description: String
    }

    /// posix_spawn and waitpid, not Foundation's Process: called from a thread of its own, Process left the exited
    /// `runuser` unreaped and `waitUntilExit` never returned. Output goes to a file, not a pipe: the server pg_ctl
    /// starts inherits the descriptors and would keep a pipe open.
    static func run(_ command: [String], as prefix: [String]) throws {
        let all = prefix + command
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("fulcrum-pg-command-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of the test process: its sockets (hundreds, with a simulated cluster running beside) would
        // stay open in the server for its lifetime, and count against the descriptors it may open (PostgreSQL
        // refused to start with "System allows 26, we need at least 58").
        _ = closeFrom(&actions, 3)
        let arguments = all.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, all[0], &actions, nil, arguments, environ)
        guard spawned == 0 else { throw CommandFailed(description: "cannot run \(all[0]): error \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw CommandFailed(description: "waitpid failed: \(errno)") }
        }
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited, code == 0 else {
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw CommandFailed(description: "\(command.first ?? "") failed (status \(status)): \(output)")
        }
    }

    /// A free port below the kernel's ephemeral range (32768 and up on Linux): the server is stopped and started
    /// again on the same port, and a port from the ephemeral range may meanwhile be taken by any outgoing connection
    /// of a busy test run (it happened, under the chaos test's simulated cluster).
    static func freePort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(socket) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 }
            }
            if bound { return port }
        }
        throw CommandFailed(description: "no free port")
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc module does not import.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func closeFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32
