import FulcrumCore
import FulcrumStore
import Foundation
import Logging

/// Everything `fulcrum serve` needs, resolved from flags with environment fallbacks and checked as a whole, so
/// an operator sees every mistake at once instead of one per restart.
public struct FulcrumConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// nil runs the in-memory dev store.
    public var database: DatabaseURL?
    public var databaseMaxConnections: Int
    public var logLevel: Logger.Level
    public var maxBodyBytes: Int
    /// Past this age a worker's load figures are stale.
    public var telemetryStaleAfter: Duration = .seconds(2)
    /// What balancers do with a rank whose telemetry is stale.
    public var stalenessPolicy: StalenessPolicy = .lastPlusAssigned
    /// A worker silent this long is marked dead.
    public var workerTimeout: Duration = .seconds(10)
    /// A connection that sends nothing this long while a request's head or body is unfinished, or between
    /// requests, is closed: so a slow or half-sent client holds no connection, and shutdown waits on none, for
    /// longer. Parked placement polls (fully read, being answered) are not touched.
    public var idleTimeout: Duration = .seconds(30)
    /// Open connections at most; at the cap new ones wait in the listen backlog until one closes.
    public var maxConnections = 10_000
    /// One telemetry history row per worker per this interval.
    public var telemetrySampleInterval: Duration = .seconds(10)
    /// How long telemetry history is kept in the database.
    public var telemetryRetention: Duration = .seconds(7 * 86_400)
    /// Telemetry rows held in memory while the database is unreachable.
    public var telemetryBuffer = 100_000
    /// The sliding window over which expert load is estimated for the expert-parallel balancer.
    public var expertLoadWindow: Duration = .seconds(600)
    /// How often each unit's expert placement is solved on schedule; zero: only on demand and on worker changes.
    public var rebalanceInterval: Duration = .seconds(600)
    /// A scheduled rebalance publishes only when it cuts the predicted peak expert load by more than this fraction.
    public var rebalanceMinGain = 0.05
    /// At most this many expert replicas move in one rebalance; nil: no limit.
    public var rebalanceMaxMoves: Int?
    /// The bearer tokens that may call /v1; empty only in dev mode on a loopback address.
    public var tokens: [AccessToken] = []
    /// Whether /metrics and /v1/metrics need a token (any role).
    public var metricsAccess: MetricsAccess = .token
    /// This process among the replicas sharing the database: unique to it, stable across its restarts.
    public var replicaID = FulcrumConfiguration.defaultReplicaID
    /// Where the other replicas' callers reach this one; nil: `http://` the host (or the host name, when listening
    /// on every address) and the port.
    public var advertiseURL: String?
    /// How long the leader's lease lasts without a renewal, and how often it is renewed (or, by a standby, tried).
    public var lease: Duration = .seconds(3)
    public var leaseRenewal: Duration = .seconds(1)

    static var defaultReplicaID: String {
        let name = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || "._-".contains($0) }
        return name.isEmpty ? "fulcrum" : String(name.prefix(128))
    }

    /// The URL this replica advertises as the leader's.
    public var advertisedURL: String {
        if let advertiseURL { return advertiseURL }
        let everywhere = host == "0.0.0.0" || host == "::" || host == "[::]"
        let name = everywhere ? ProcessInfo.processInfo.hostName : host
        let bracketed = name.contains(":") && !name.hasPrefix("[") ? "[\(name)]" : name
        return "http://\(bracketed):\(port)"
    }

    public enum MetricsAccess: String, Sendable, CaseIterable {
        case open
        case token
    }

    /// Without tokens every caller is an admin: allowed only for the in-memory dev store on a loopback address.
    public var accessProblem: String? {
        guard tokens.isEmpty else { return nil }
        if database == nil, Self.isLoopback(host) { return nil }
        return "no access tokens are configured (FULCRUM_TOKENS or --tokens-file); only the in-memory dev store on a "
            + "loopback address may run without them. Make one with `fulcrum token --name NAME --role admin`"
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    public init(
        host: String = "127.0.0.1", port: Int = 8080, database: DatabaseURL? = nil, databaseMaxConnections: Int = 10,
        logLevel: Logger.Level = .info, maxBodyBytes: Int = 1 << 20
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.databaseMaxConnections = databaseMaxConnections
        self.logLevel = logLevel
        self.maxBodyBytes = maxBodyBytes
    }

    public struct Problems: Error, Sendable, CustomStringConvertible {
        public var messages: [String]
        public var description: String {
            "invalid configuration:\n" + messages.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// The raw text of each setting given on the command line, by flag name (`port`, `worker-timeout`).
    public typealias Flags = [String: String]

    /// A flag wins over its environment variable, which wins over the default. An empty variable counts as unset.
    /// Every problem is collected, so an operator sees them all at once.
    public static func resolve(flags: Flags, environment: [String: String]) throws(Problems) -> FulcrumConfiguration {
        var problems: [String] = []
        var configuration = FulcrumConfiguration()
        for setting in settings {
            if let text = flags[setting.flag] {
                problems += setting.apply(text, "--\(setting.flag)", &configuration)
            } else if let text = environment[setting.environment], !text.isEmpty {
                problems += setting.apply(text, setting.environment, &configuration)
            }
        }
        if Set(configuration.tokens.map(\.name)).count != configuration.tokens.count {
            problems.append("token names must be unique across FULCRUM_TOKENS and the tokens file")
        }
        if configuration.lease < configuration.leaseRenewal * 2 {
            problems.append(
                "the lease (\(Setting.durationText(configuration.lease))) must be at least twice its renewal interval "
                    + "(\(Setting.durationText(configuration.leaseRenewal))), so that one missed renewal does not end it")
        }
        if configuration.workerTimeout <= configuration.telemetryStaleAfter {
            problems.append("the worker timeout must be longer than the telemetry staleness limit")
        }
        guard problems.isEmpty else { throw Problems(messages: problems) }
        return configuration
    }

    /// Reads `--flag value` and `--flag=value` pairs of the given settings; anything else is a problem.
    public static func flags(from arguments: [String], of allowed: [Setting] = settings) throws(Problems) -> Flags {
        let known = Set(allowed.filter(\.onCommandLine).map(\.flag))
        var flags: Flags = [:]
        var problems: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                problems.append("unexpected argument '\(argument)'")
                continue
            }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard known.contains(name) else {
                problems.append("unknown option '--\(name)'")
                continue
            }
            // A value that looks like a flag is the next flag, not this one's value (write --flag=--x for that).
            if value == nil, index < arguments.count, !arguments[index].hasPrefix("--") {
                value = arguments[index]
                index += 1
            }
            guard let value else {
                problems.append("--\(name) needs a value")
                continue
            }
            flags[name] = value
        }
        guard problems.isEmpty else { throw Problems(messages: problems) }
        return flags
    }

    /// The settings of `allowed` as help text: flag, environment variable and default on one line, the meaning on
    /// the next.
    public static func help(for allowed: [Setting] = settings) -> String {
        allowed.map { setting in
            let flag = setting.onCommandLine ? "--\(setting.flag) <value>, " : "(environment only) "
            let byDefault = setting.defaultText.map { " (default: \($0))" } ?? ""
            return "  \(flag)\(setting.environment)\(byDefault)\n      \(setting.help)"
        }.joined(separator: "\n")
    }
}

/// One setting of `fulcrum serve`, declared once: its flag, its environment variable, its default (read off a
/// fresh `FulcrumConfiguration`), its meaning, and how its text is checked and applied. The command line, the
/// environment, `--help` and the README's table all come from `FulcrumConfiguration.settings`.
public struct Setting: Sendable {
    public let flag: String
    public let environment: String
    public let help: String
    /// The default as written on the command line; nil when the setting is unset by default.
    public let defaultText: String?
    /// False for secrets, which belong in the environment rather than in every process listing.
    public let onCommandLine: Bool
    /// Checks `text` (from `source`, a flag or a variable) and applies it; returns the problems found.
    let apply: @Sendable (_ text: String, _ source: String, _ configuration: inout FulcrumConfiguration) -> [String]

    init(
        _ flag: String, _ environment: String, default defaultText: String?, onCommandLine: Bool = true,
        _ help: String,
        apply: @escaping @Sendable (_ text: String, _ source: String, _ configuration: inout FulcrumConfiguration) -> [String]
    ) {
        self.flag = flag
        self.environment = environment
        self.help = help
        self.defaultText = defaultText
        self.onCommandLine = onCommandLine
        self.apply = apply
    }

    static func integer(
        _ flag: String, _ environment: String, _ path: any WritableKeyPath<FulcrumConfiguration, Int> & Sendable,
        in range: ClosedRange<Int>, _ help: String
    ) -> Setting {
        Setting(flag, environment, default: "\(FulcrumConfiguration()[keyPath: path])", help) { text, source, configuration in
            guard let value = Int(text), range.contains(value) else {
                return ["\(source) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'"]
            }
            configuration[keyPath: path] = value
            return []
        }
    }

    static func duration(
        _ flag: String, _ environment: String, _ path: any WritableKeyPath<FulcrumConfiguration, Duration> & Sendable,
        in range: ClosedRange<Duration>, _ help: String
    ) -> Setting {
        Setting(flag, environment, default: durationText(FulcrumConfiguration()[keyPath: path]), help) {
            text, source, configuration in
            guard let value = parseDuration(text), range.contains(value) else {
                return [
                    "\(source) must be a duration from \(range.lowerBound) to \(range.upperBound) such as 2s, 500ms, 10m, 7d; got '\(text)'"
                ]
            }
            configuration[keyPath: path] = value
            return []
        }
    }

    static func choice<Value: RawRepresentable<String> & CaseIterable & Sendable>(
        _ flag: String, _ environment: String, _ path: any WritableKeyPath<FulcrumConfiguration, Value> & Sendable,
        _ help: String
    ) -> Setting {
        Setting(flag, environment, default: FulcrumConfiguration()[keyPath: path].rawValue, help) {
            text, source, configuration in
            guard let value = Value(rawValue: text) else {
                return ["\(source) must be one of \(Value.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'"]
            }
            configuration[keyPath: path] = value
            return []
        }
    }

    /// `2s`, `10m`, `7d`: the largest unit that writes the duration exactly.
    static func durationText(_ duration: Duration) -> String {
        let milliseconds = Int64((duration.seconds * 1_000).rounded())
        for (unit, scale) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)]
        where milliseconds >= scale && milliseconds % scale == 0 {
            return "\(milliseconds / scale)\(unit)"
        }
        return "\(milliseconds)ms"
    }
}

extension FulcrumConfiguration {
    /// Every setting, in the order `--help` and the README list them.
    public static let settings: [Setting] = [
        Setting("host", "FULCRUM_HOST", default: FulcrumConfiguration().host, "address to listen on") { host, source, configuration in
            guard !host.isEmpty, !host.contains(where: \.isWhitespace) else {
                return ["\(source) must be a host name or address, got '\(host)'"]
            }
            configuration.host = host
            return []
        },
        .integer("port", "FULCRUM_PORT", \.port, in: 0...65_535, "port to listen on (0: any free port)"),
        Setting(
            "database-url", "DATABASE_URL", default: nil,
            "postgres://user:password@host:5432/db, with ?sslmode= disable, prefer or require; unset: the in-memory dev store"
        ) { text, source, configuration in
            do throws(DatabaseURL.ParseError) {
                configuration.database = try DatabaseURL(text)
                return []
            } catch {
                // The URL may hold a password: say what is wrong, never echo it.
                return ["\(source) \(error.description)"]
            }
        },
        .integer(
            "database-max-connections", "FULCRUM_DATABASE_MAX_CONNECTIONS", \.databaseMaxConnections, in: 1...500,
            "size of the PostgreSQL connection pool"),
        Setting(
            "log-level", "FULCRUM_LOG_LEVEL", default: FulcrumConfiguration().logLevel.rawValue, "trace, debug, info, notice, warning, error or critical"
        ) { text, source, configuration in
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                return ["\(source) must be one of trace, debug, info, notice, warning, error, critical; got '\(text)'"]
            }
            configuration.logLevel = level
            return []
        },
        .integer(
            "max-body-bytes", "FULCRUM_MAX_BODY_BYTES", \.maxBodyBytes, in: 1_024...(256 << 20),
            "largest request body accepted"),
        .duration(
            "telemetry-stale-after", "FULCRUM_TELEMETRY_STALE_AFTER", \.telemetryStaleAfter,
            in: .milliseconds(10)...(.seconds(3_600)), "age past which a worker's load figures are stale (e.g. 2s, 500ms)"),
        .choice(
            "stale-policy", "FULCRUM_STALE_POLICY", \.stalenessPolicy,
            "what balancers do with a stale rank: last-plus-assigned (use its last figures plus what was assigned since) or exclude"),
        .duration(
            "worker-timeout", "FULCRUM_WORKER_TIMEOUT", \.workerTimeout, in: .milliseconds(100)...(.seconds(86_400)),
            "silence after which a worker is marked dead"),
        .duration(
            "idle-timeout", "FULCRUM_IDLE_TIMEOUT", \.idleTimeout, in: .milliseconds(100)...(.seconds(3_600)),
            "a connection silent this long mid-request or between requests is closed"),
        .integer(
            "max-connections", "FULCRUM_MAX_CONNECTIONS", \.maxConnections, in: 1...1_000_000,
            "open connections at most; past it new ones wait in the listen backlog until one closes"),
        .duration(
            "telemetry-sample-interval", "FULCRUM_TELEMETRY_SAMPLE_INTERVAL", \.telemetrySampleInterval,
            in: .milliseconds(100)...(.seconds(86_400)), "one telemetry history row per worker per this interval"),
        .duration(
            "telemetry-retention", "FULCRUM_TELEMETRY_RETENTION", \.telemetryRetention,
            in: .seconds(60)...(.seconds(3_650 * 86_400)), "how long telemetry history is kept (e.g. 7d, 12h)"),
        .duration(
            "expert-load-window", "FULCRUM_EXPERT_LOAD_WINDOW", \.expertLoadWindow, in: .seconds(10)...(.seconds(86_400)),
            "sliding window of the expert-load estimate (e.g. 10m)"),
        Setting(
            "rebalance-interval", "FULCRUM_REBALANCE_INTERVAL",
            default: Setting.durationText(FulcrumConfiguration().rebalanceInterval),
            "how often each unit's expert placement is re-solved on schedule (e.g. 10m; 0 = only on demand)"
        ) { text, source, configuration in
            // Only a zero written as such turns the schedule off; 0.4ms rounds to zero but is a mistake.
            guard let value = parseDuration(text), value <= .seconds(7 * 86_400),
                value >= .seconds(10) || (value == .zero && Double(text.filter { $0.isNumber || $0 == "." }) == 0)
            else {
                return ["\(source) must be 0 (off) or a duration from 10s to 7d, got '\(text)'"]
            }
            configuration.rebalanceInterval = value
            return []
        },
        Setting(
            "rebalance-min-gain", "FULCRUM_REBALANCE_MIN_GAIN", default: "\(FulcrumConfiguration().rebalanceMinGain)",
            "a scheduled rebalance publishes only when the predicted peak expert load falls by more than this fraction (0 to 1)"
        ) { text, source, configuration in
            guard let gain = Double(text), gain >= 0, gain <= 1 else {
                return ["\(source) must be a fraction from 0 to 1 such as 0.05, got '\(text)'"]
            }
            configuration.rebalanceMinGain = gain
            return []
        },
        Setting(
            "rebalance-max-moves", "FULCRUM_REBALANCE_MAX_MOVES", default: nil,
            "at most this many expert replicas move in one rebalance (unset: no limit)"
        ) { text, source, configuration in
            guard let moves = Int(text), (1...100_000_000).contains(moves) else {
                return ["\(source) must be a whole number from 1 to 100000000, got '\(text)'"]
            }
            configuration.rebalanceMaxMoves = moves
            return []
        },
        .integer(
            "telemetry-buffer", "FULCRUM_TELEMETRY_BUFFER", \.telemetryBuffer, in: 1_000...100_000_000,
            "telemetry rows held in memory while the database is unreachable"),
        Setting(
            "tokens", "FULCRUM_TOKENS", default: nil, onCommandLine: false,
            "access tokens as name:role:sha256hex, separated by commas (see `fulcrum token`)"
        ) { text, source, configuration in
            let parsed = AccessToken.parse(text, source: source)
            configuration.tokens += parsed.tokens
            return parsed.problems
        },
        Setting(
            "tokens-file", "FULCRUM_TOKENS_FILE", default: nil,
            "a file of access tokens, one name:role:sha256hex per line (see `fulcrum token`)"
        ) { path, source, configuration in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                return ["\(source): cannot read '\(path)'"]
            }
            let parsed = AccessToken.parse(text, source: "\(source) \(path)")
            configuration.tokens += parsed.tokens
            return parsed.problems
        },
        .choice(
            "metrics-auth", "FULCRUM_METRICS_AUTH", \.metricsAccess,
            "token (any valid token may read /metrics and /v1/metrics) or open"),
        Setting(
            "replica-id", "FULCRUM_REPLICA_ID", default: "the host name",
            "this replica's id among those sharing the database ([A-Za-z0-9._-], up to 128); unique, stable across restarts"
        ) { text, source, configuration in
            guard (1...128).contains(text.count), text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
            else {
                return ["\(source) must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', got '\(text)'"]
            }
            configuration.replicaID = text
            return []
        },
        Setting(
            "advertise-url", "FULCRUM_ADVERTISE_URL", default: "http://HOST:PORT",
            "the URL standbys name as the leader's (Fulcrum-Leader header, /v1/cluster): how callers reach this replica"
        ) { text, source, configuration in
            guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil
            else {
                return ["\(source) must be an http:// or https:// URL such as http://fulcrum-0.fulcrum:8080, got '\(text)'"]
            }
            configuration.advertiseURL = text.hasSuffix("/") ? String(text.dropLast()) : text
            return []
        },
        .duration(
            "lease", "FULCRUM_LEASE", \.lease, in: .milliseconds(300)...(.seconds(120)),
            "the leader's lease: a leader that cannot renew it steps down before it ends, and a standby takes over once it has"),
        .duration(
            "lease-renewal", "FULCRUM_LEASE_RENEWAL", \.leaseRenewal, in: .milliseconds(100)...(.seconds(60)),
            "how often the leader renews its lease and a standby tries to take it"),
    ]

    /// The settings every command that reaches the database takes (`migrate` as well as `serve`).
    public static let commonSettings = settings.filter { ["database-url", "log-level"].contains($0.flag) }
}

/// Parses `500ms`, `2s`, `10m`, `12h`, `7d` or a bare number of seconds (decimals allowed).
public func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400)]
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let (number, scale) = units.first { trimmed.hasSuffix($0.0) && Double(trimmed.dropLast($0.0.count)) != nil }
        .map { (Double(trimmed.dropLast($0.0.count)), $0.1) } ?? (Double(trimmed), 1)
    guard let number, number.isFinite, number >= 0, number * scale < 1e9 else { return nil }
    return .milliseconds(Int64((number * scale * 1_000).rounded()))
}
