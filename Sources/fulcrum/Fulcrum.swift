import ArgumentParser
import FulcrumCore
import FulcrumServer
import FulcrumStore
import Hummingbird
import Foundation
import Logging
import FulcrumSimulator
import ServiceLifecycle
import Synchronization

@main
struct Fulcrum: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fulcrum: the load-balancing control plane of a DeepSeek-V3-style MoE inference cluster.",
        subcommands: [Serve.self, Migrate.self, TokenCommand.self, EPLBCommand.self, SimulateCommand.self, Bench.self])

    /// The parser's `main`, except for a `ValidationError` that a subcommand's `run()` throws: the parser would print
    /// the root's usage ("fulcrum <subcommand>") with it; this prints the subcommand's, as for its parse and
    /// `validate()` errors, with the same exit code (64).
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var command = command
                try command.run()
            }
        } catch let error as ArgumentParser.ValidationError {
            let subcommand = type(of: command)
            let usage = usageString(for: subcommand).replacingOccurrences(of: "\n", with: "\n       ")
            let names = commandPath(to: subcommand).joined(separator: " ")
            FileHandle.standardError.write(Data("""
                Error: \(error.message)
                Usage: \(usage)
                  See '\(names) --help' for more information.

                """.utf8))
            exit(withError: ExitCode.validationFailure)
        } catch {
            exit(withError: error)
        }
    }

    /// The command names from the root to `target`, as typed: ["fulcrum", "bench", "eplb"].
    static func commandPath(
        to target: any ParsableCommand.Type, from command: any ParsableCommand.Type = Fulcrum.self
    ) -> [String] {
        if ObjectIdentifier(command) == ObjectIdentifier(target) { return [command._commandName] }
        for subcommand in command.configuration.subcommands {
            let path = commandPath(to: target, from: subcommand)
            if !path.isEmpty { return [command._commandName] + path }
        }
        return []
    }
}

/// The values of the options a command cannot run without, declared optional: the parser alone reports only the
/// first one missing, this names every one in a single usage error (exit code 64, the subcommand's usage). Spell
/// such options in the command's `usage`, where the parser would otherwise show them as optional.
///
///     let (name, role) = try required(("--name", self.name), ("--role", self.role))
func required<each Value>(_ options: repeat (flag: String, value: (each Value)?)) throws -> (repeat each Value) {
    var missing: [String] = []
    for option in repeat each options {
        if option.value == nil { missing.append(option.flag) }
    }
    if let last = missing.popLast() {
        throw ValidationError("missing \(missing.isEmpty ? last : missing.joined(separator: ", ") + " and " + last)")
    }
    func unwrap<V>(_ value: V?) throws -> V {
        guard let value else { throw ValidationError("missing an option") }
        return value
    }
    return (repeat try unwrap((each options).value))
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks; build with -c release for meaningful figures.",
        subcommands: [ProtocolBench.self, EPLBBench.self, AssignBench.self, BalanceBench.self, WorkloadsBench.self])
}

/// The settings of `serve` or `migrate`, declared once in `FulcrumConfiguration.settings`: captured here as
/// `--flag value` pairs and read by the configuration, so each has one flag, one variable, one default and one help.
struct SettingArguments: ParsableArguments {
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings: see SETTINGS above.", visibility: .hidden))
    var arguments: [String] = []
}

/// Resolves the configuration from `arguments` (settings among `allowed`) and the environment, or exits with every
/// problem listed (exit code 78, EX_CONFIG).
func resolveConfiguration(_ arguments: [String], allowed: [Setting] = FulcrumConfiguration.settings) throws
    -> FulcrumConfiguration
{
    do {
        let flags = try FulcrumConfiguration.flags(from: arguments, of: allowed)
        return try FulcrumConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
    } catch {
        FileHandle.standardError.write(Data("fulcrum: \(error.description)\n".utf8))
        throw ExitCode(78)
    }
}

func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the control plane: REST API, registry and background services. Migrates the database first.",
        discussion: """
            SETTINGS (a flag wins over its environment variable, which wins over the default; durations take ms, s, \
            m, h or d):
            \(FulcrumConfiguration.help())
            """)

    @OptionGroup var settings: SettingArguments

    @Flag(help: "Attach a simulated DeepSeek-shaped cluster that drives this Fulcrum through its API (see `fulcrum simulate`).")
    var simulate = false

    @OptionGroup(title: "Simulated cluster (with --simulate)")
    var simulation: SimulationOptions

    func validate() throws {
        let stray = simulation.changedFlags
        if !simulate, !stray.isEmpty {
            throw ValidationError("\(stray.joined(separator: ", ")) \(stray.count == 1 ? "is a" : "are") --simulate flag\(stray.count == 1 ? "" : "s"): add --simulate")
        }
    }

    func run() async throws {
        var configuration = try resolveConfiguration(settings.arguments)
        // The simulated cluster calls the API like any client: with a token of its own when tokens are in use.
        var simulatorToken: String?
        if simulate, !configuration.tokens.isEmpty {
            let secret = AccessToken.randomSecret()
            configuration.tokens.append(AccessToken(name: "simulator", role: .admin, secret: secret))
            simulatorToken = secret
        }
        if simulate, configuration.port == 0 {
            FileHandle.standardError.write(Data("fulcrum: --simulate needs a fixed --port\n".utf8))
            throw ExitCode(78)
        }
        if let problem = configuration.accessProblem {
            FileHandle.standardError.write(Data("fulcrum: refusing to start: \(problem)\n".utf8))
            throw ExitCode(78)
        }
        // The simulation's workloads are read before anything starts: a missing file is an error at once.
        var settings: Simulation.Settings?
        if simulate {
            let host = ["0.0.0.0", "::", ""].contains(configuration.host) ? "127.0.0.1" : configuration.host
            do {
                settings = try simulation.settings(
                    target: "http://\(host.contains(":") ? "[\(host)]" : host):\(configuration.port)", token: simulatorToken,
                    defaultDuration: nil)
            } catch {
                FileHandle.standardError.write(Data("fulcrum: \(error)\n".utf8))
                throw ExitCode(78)
            }
        }
        bootstrapLogging(configuration.logLevel)
        let logger = Logger(label: "fulcrum")
        let app = try await buildApplication(configuration)
        guard let settings else {
            try await Serving.run(app, logger: logger)
            logger.notice("stopped: requests in flight finished, services stopped, pool closed")
            return
        }
        let options = simulation
        let passed = Mutex(true)
        // A simulation that ends (its --duration ran out, or it failed) stops Fulcrum too, gracefully.
        let simulated = SimulationService(try Simulation(settings), progress: printLine) { report in
            passed.withLock { $0 = report.passed }
            try options.deliver(report)
        }
        try await Serving.run(app, beside: [simulated], logger: logger)
        logger.notice("stopped: simulation reported, requests in flight finished, services stopped")
        if !passed.withLock({ $0 }) { throw ExitCode(1) }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations (safe to run beside a serving Fulcrum), or show their status.",
        discussion: "SETTINGS:\n\(FulcrumConfiguration.help(for: FulcrumConfiguration.commonSettings))")

    @OptionGroup var settings: SettingArguments

    @Flag(help: "Only print which migrations are applied and pending.")
    var status = false

    func run() async throws {
        let configuration = try resolveConfiguration(settings.arguments, allowed: FulcrumConfiguration.commonSettings)
        guard let database = configuration.database else {
            FileHandle.standardError.write(Data("fulcrum: migrate needs --database-url or DATABASE_URL\n".utf8))
            throw ExitCode(78)
        }
        bootstrapLogging(configuration.logLevel)
        let logger = Logger(label: "fulcrum.migrate")
        let migrations = try Migration.bundled()
        let showStatus = status
        try await withPostgresClient(database, maxConnections: 1, logger: logger) { client in
            let migrator = Migrator(client: client, migrations: migrations, logger: logger)
            if showStatus {
                let status = try await migrator.status()
                print("applied: \(status.applied.map(String.init).joined(separator: ", "))")
                print("pending: \(status.pending.map { "\($0.version)_\($0.name)" }.joined(separator: ", "))")
                if !status.newer.isEmpty {
                    print("newer than this build: \(status.newer.map(String.init).joined(separator: ", "))")
                }
            } else {
                let applied = try await migrator.migrate()
                print(applied.isEmpty
                    ? "schema is current (\(migrations.count) migrations)"
                    : "applied \(applied.map { "\($0.version)_\($0.name)" }.joined(separator: ", "))")
            }
        }
    }
}

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make an access token: prints the token (give it to its user) and the line that configures it.",
        usage: "fulcrum token --name <name> --role <role> [--worker <id> | --unit <unit> ...]")

    @Option(help: "The token's name, as the audit trail and logs show it.")
    var name: String?

    @Option(help: "admin, worker or gateway.")
    var role: String?

    @Option(help: "A worker token for this worker id only.")
    var worker: String?

    @Option(help: "A worker token for this unit's workers only, or a gateway token for assignments in these units only (repeat for several).")
    var unit: [String] = []

    func run() throws {
        let (name, role) = try required(("--name", self.name), ("--role", self.role))
        guard let accessRole = AccessRole(rawValue: role) else {
            throw ValidationError("--role must be admin, worker or gateway")
        }
        let scope: TokenScope?
        switch (worker, unit.isEmpty) {
        case (nil, true): scope = nil
        case (let id?, true): scope = .worker(id)
        case (nil, false): scope = .units(Set(unit))
        case (_?, false): throw ValidationError("--worker and --unit cannot be used together")
        }
        let secret = AccessToken.randomSecret()
        let token = AccessToken(name: name, role: accessRole, secret: secret, scope: scope)
        let problems = AccessToken.parse(token.line, source: "the token").problems
        guard problems.isEmpty else {
            throw ValidationError(problems.joined(separator: "; ").replacingOccurrences(of: "the token entry 1", with: "the token"))
        }
        print("token:  \(secret)")
        print("config: \(token.line)    # a line of FULCRUM_TOKENS_FILE, or an entry of FULCRUM_TOKENS")
    }
}
