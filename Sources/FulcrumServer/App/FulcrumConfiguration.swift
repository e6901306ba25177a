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

    /// One setting: its flag, its environment variable and what it means. The README's table lists the same.
    public struct Setting: Sendable {
        public var flag: String
        public var environment: String
        public var help: String
    }

    public static let hostSetting = Setting(flag: "host", environment: "FULCRUM_HOST", help: "address to listen on")
    public static let portSetting = Setting(flag: "port", environment: "FULCRUM_PORT", help: "port to listen on")
    public static let databaseSetting = Setting(
        flag: "database-url", environment: "DATABASE_URL",
        help: "postgres://user:password@host:5432/db, with ?sslmode= disable, prefer or require; unset: the in-memory dev store")
    public static let poolSetting = Setting(
        flag: "database-max-connections", environment: "FULCRUM_DATABASE_MAX_CONNECTIONS",
        help: "size of the PostgreSQL connection pool")
    public static let logLevelSetting = Setting(
        flag: "log-level", environment: "FULCRUM_LOG_LEVEL",
        help: "trace, debug, info, notice, warning, error or critical")
    public static let maxBodySetting = Setting(
        flag: "max-body-bytes", environment: "FULCRUM_MAX_BODY_BYTES", help: "largest request body accepted")

    public static let staleSetting = Setting(
        flag: "telemetry-stale-after", environment: "FULCRUM_TELEMETRY_STALE_AFTER",
        help: "age past which a worker's load figures are stale (e.g. 2s, 500ms)")
    public static let policySetting = Setting(
        flag: "stale-policy", environment: "FULCRUM_STALE_POLICY",
        help: "what balancers do with a stale rank: last-plus-assigned (use its last figures plus what was assigned since) or exclude")
    public static let idleTimeoutSetting = Setting(
        flag: "idle-timeout", environment: "FULCRUM_IDLE_TIMEOUT",
        help: "a connection silent this long mid-request or between requests is closed")
    public static let maxConnectionsSetting = Setting(
        flag: "max-connections", environment: "FULCRUM_MAX_CONNECTIONS",
        help: "open connections at most; past it new ones wait in the listen backlog until one closes")
    public static let timeoutSetting = Setting(
        flag: "worker-timeout", environment: "FULCRUM_WORKER_TIMEOUT",
        help: "silence after which a worker is marked dead")
    public static let sampleSetting = Setting(
        flag: "telemetry-sample-interval", environment: "FULCRUM_TELEMETRY_SAMPLE_INTERVAL",
        help: "one telemetry history row per worker per this interval")
    public static let retentionSetting = Setting(
        flag: "telemetry-retention", environment: "FULCRUM_TELEMETRY_RETENTION",
        help: "how long telemetry history is kept (e.g. 7d, 12h)")
    public static let expertWindowSetting = Setting(
        flag: "expert-load-window", environment: "FULCRUM_EXPERT_LOAD_WINDOW",
        help: "sliding window of the expert-load estimate (e.g. 10m)")
    public static let rebalanceIntervalSetting = Setting(
        flag: "rebalance-interval", environment: "FULCRUM_REBALANCE_INTERVAL",
        help: "how often each unit's expert placement is re-solved on schedule (e.g. 10m; 0 = only on demand)")
    public static let minGainSetting = Setting(
        flag: "rebalance-min-gain", environment: "FULCRUM_REBALANCE_MIN_GAIN",
        help: "a scheduled rebalance publishes only when the predicted peak expert load falls by more than this fraction (0 to 1)")
    public static let maxMovesSetting = Setting(
        flag: "rebalance-max-moves", environment: "FULCRUM_REBALANCE_MAX_MOVES",
        help: "at most this many expert replicas move in one rebalance (unset: no limit)")
    public static let tokensSetting = Setting(
        flag: "tokens", environment: "FULCRUM_TOKENS",
        help: "access tokens as name:role:sha256hex, separated by commas (see `fulcrum token`)")
    public static let tokensFileSetting = Setting(
        flag: "tokens-file", environment: "FULCRUM_TOKENS_FILE",
        help: "a file of access tokens, one name:role:sha256hex per line (see `fulcrum token`)")
    public static let metricsAuthSetting = Setting(
        flag: "metrics-auth", environment: "FULCRUM_METRICS_AUTH",
        help: "token (any valid token may read /metrics and /v1/metrics) or open")
    public static let bufferSetting = Setting(
        flag: "telemetry-buffer", environment: "FULCRUM_TELEMETRY_BUFFER",
        help: "telemetry rows held in memory while the database is unreachable")

    /// The raw text of each setting as given on the command line; nil means not given.
    public struct Flags: Sendable {
        public var host: String?
        public var port: String?
        public var databaseURL: String?
        public var databaseMaxConnections: String?
        public var logLevel: String?
        public var maxBodyBytes: String?
        public var telemetryStaleAfter: String?
        public var stalePolicy: String?
        public var workerTimeout: String?
        public var idleTimeout: String?
        public var maxConnections: String?
        public var telemetrySampleInterval: String?
        public var telemetryRetention: String?
        public var telemetryBuffer: String?
        public var expertLoadWindow: String?
        public var rebalanceInterval: String?
        public var rebalanceMinGain: String?
        public var rebalanceMaxMoves: String?
        public var tokens: String?
        public var tokensFile: String?
        public var metricsAuth: String?

        public init(
            host: String? = nil, port: String? = nil, databaseURL: String? = nil,
            databaseMaxConnections: String? = nil, logLevel: String? = nil, maxBodyBytes: String? = nil
        ) {
            self.host = host
            self.port = port
            self.databaseURL = databaseURL
            self.databaseMaxConnections = databaseMaxConnections
            self.logLevel = logLevel
            self.maxBodyBytes = maxBodyBytes
        }
    }

    public struct Problems: Error, Sendable, CustomStringConvertible {
        public var messages: [String]
        public var description: String {
            "invalid configuration:\n" + messages.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// A flag wins over its environment variable, which wins over the default. An empty variable counts as unset.
    public static func resolve(flags: Flags, environment: [String: String]) throws(Problems) -> FulcrumConfiguration {
        var problems: [String] = []
        var configuration = FulcrumConfiguration()

        func raw(_ flag: String?, _ setting: Setting) -> (value: String, source: String)? {
            if let flag { return (flag, "--\(setting.flag)") }
            if let value = environment[setting.environment], !value.isEmpty { return (value, setting.environment) }
            return nil
        }
        func integer(_ flag: String?, _ setting: Setting, in range: ClosedRange<Int>) -> Int? {
            guard let (text, source) = raw(flag, setting) else { return nil }
            guard let value = Int(text), range.contains(value) else {
                problems.append("\(source) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
                return nil
            }
            return value
        }

        if let (host, source) = raw(flags.host, hostSetting) {
            if host.contains(where: \.isWhitespace) || host.isEmpty {
                problems.append("\(source) must be a host name or address, got '\(host)'")
            } else {
                configuration.host = host
            }
        }
        if let port = integer(flags.port, portSetting, in: 0...65_535) { configuration.port = port }
        if let pool = integer(flags.databaseMaxConnections, poolSetting, in: 1...500) {
            configuration.databaseMaxConnections = pool
        }
        if let limit = integer(flags.maxBodyBytes, maxBodySetting, in: 1_024...(256 << 20)) {
            configuration.maxBodyBytes = limit
        }
        func duration(_ flag: String?, _ setting: Setting, in range: ClosedRange<Duration>) -> Duration? {
            guard let (text, source) = raw(flag, setting) else { return nil }
            guard let value = parseDuration(text), range.contains(value) else {
                problems.append(
                    "\(source) must be a duration from \(range.lowerBound) to \(range.upperBound) such as 2s, 500ms, 10m, 7d; got '\(text)'")
                return nil
            }
            return value
        }
        if let value = duration(flags.telemetryStaleAfter, staleSetting, in: .milliseconds(10)...(.seconds(3_600))) {
            configuration.telemetryStaleAfter = value
        }
        if let value = duration(flags.workerTimeout, timeoutSetting, in: .milliseconds(100)...(.seconds(86_400))) {
            configuration.workerTimeout = value
        }
        if let value = duration(flags.idleTimeout, idleTimeoutSetting, in: .milliseconds(100)...(.seconds(3_600))) {
            configuration.idleTimeout = value
        }
        if let value = duration(flags.telemetrySampleInterval, sampleSetting, in: .milliseconds(100)...(.seconds(86_400))) {
            configuration.telemetrySampleInterval = value
        }
        if let value = duration(flags.telemetryRetention, retentionSetting, in: .seconds(60)...(.seconds(3_650 * 86_400))) {
            configuration.telemetryRetention = value
        }
        if let value = duration(flags.expertLoadWindow, expertWindowSetting, in: .seconds(10)...(.seconds(86_400))) {
            configuration.expertLoadWindow = value
        }
        if let value = duration(flags.rebalanceInterval, rebalanceIntervalSetting, in: .zero...(.seconds(7 * 86_400))),
            let (text, source) = raw(flags.rebalanceInterval, rebalanceIntervalSetting)
        {
            // Only a zero written as such turns the schedule off; 0.4ms rounds to zero but is a mistake.
            if value < .seconds(10), value > .zero || (Double(text.filter { $0.isNumber || $0 == "." }) ?? 1) != 0 {
                problems.append("\(source) must be 0 (off) or at least 10s, got '\(text)'")
            } else {
                configuration.rebalanceInterval = value
            }
        }
        if let (text, source) = raw(flags.rebalanceMinGain, minGainSetting) {
            if let gain = Double(text), gain >= 0, gain <= 1 {
                configuration.rebalanceMinGain = gain
            } else {
                problems.append("\(source) must be a fraction from 0 to 1 such as 0.05, got '\(text)'")
            }
        }
        if let value = integer(flags.rebalanceMaxMoves, maxMovesSetting, in: 1...100_000_000) {
            configuration.rebalanceMaxMoves = value
        }
        if let value = integer(flags.maxConnections, maxConnectionsSetting, in: 1...1_000_000) {
            configuration.maxConnections = value
        }
        if let value = integer(flags.telemetryBuffer, bufferSetting, in: 1_000...100_000_000) {
            configuration.telemetryBuffer = value
        }
        if let (text, source) = raw(flags.stalePolicy, policySetting) {
            if let policy = StalenessPolicy(rawValue: text) {
                configuration.stalenessPolicy = policy
            } else {
                problems.append(
                    "\(source) must be one of \(StalenessPolicy.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
            }
        }
        if let (text, source) = raw(flags.tokens, tokensSetting) {
            let parsed = AccessToken.parse(text, source: source)
            configuration.tokens += parsed.tokens
            problems += parsed.problems
        }
        if let (path, source) = raw(flags.tokensFile, tokensFileSetting) {
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                let parsed = AccessToken.parse(text, source: "\(source) \(path)")
                configuration.tokens += parsed.tokens
                problems += parsed.problems
            } else {
                problems.append("\(source): cannot read '\(path)'")
            }
        }
        if Set(configuration.tokens.map(\.name)).count != configuration.tokens.count {
            problems.append("token names must be unique across FULCRUM_TOKENS and the tokens file")
        }
        if let (text, source) = raw(flags.metricsAuth, metricsAuthSetting) {
            if let access = MetricsAccess(rawValue: text) {
                configuration.metricsAccess = access
            } else {
                problems.append("\(source) must be token or open; got '\(text)'")
            }
        }
        if configuration.workerTimeout <= configuration.telemetryStaleAfter {
            problems.append("the worker timeout must be longer than the telemetry staleness limit")
        }
        if let (text, source) = raw(flags.logLevel, logLevelSetting) {
            if let level = Logger.Level(rawValue: text.lowercased()) {
                configuration.logLevel = level
            } else {
                problems.append("\(source) must be one of trace, debug, info, notice, warning, error, critical; got '\(text)'")
            }
        }
        if let (text, source) = raw(flags.databaseURL, databaseSetting) {
            do {
                configuration.database = try DatabaseURL(text)
            } catch {
                // The URL may hold a password: say what is wrong, never echo it.
                problems.append("\(source) \(error.description)")
            }
        }
        guard problems.isEmpty else { throw Problems(messages: problems) }
        return configuration
    }
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
