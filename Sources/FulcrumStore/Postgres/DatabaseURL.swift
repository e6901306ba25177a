import Foundation
import NIOSSL
import PostgresNIO

/// A parsed `postgres://user:password@host:port/database?sslmode=…` URL (libpq's form, as DATABASE_URL is
/// everywhere). `?host=/path` selects a Unix socket directory, as libpq does. `sslmode` means what it means to
/// libpq: `prefer` and `require` encrypt without checking the certificate (servers often have self-signed ones),
/// `verify-ca` checks it against the system's trusted roots, `verify-full` checks the host name too.
public struct DatabaseURL: Hashable, Sendable, CustomStringConvertible {
    public enum TLSMode: String, Hashable, Sendable, CaseIterable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    public var socketDirectory: String?

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String) throws(ParseError) {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else {
            throw ParseError(description: "must look like postgres://user:password@host:5432/database")
        }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        socketDirectory = query["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        // An IPv6 literal comes back in brackets, which a resolver does not take.
        host = components.host.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
            .flatMap { $0.isEmpty ? nil : $0 } ?? "localhost"
        port = components.port ?? 5432
        guard (1...65_535).contains(port) else {
            throw ParseError(description: "port must be between 1 and 65535")
        }
        // `user`, `password` and `path` are already percent-decoded by URLComponents: decoding again would turn
        // a password such as "100%2541" (meaning "100%41") into "100A".
        guard let user = components.user, !user.isEmpty else {
            throw ParseError(description: "must name a user: postgres://USER@host/database")
        }
        username = user
        password = components.password
        let path = String(components.path.drop { $0 == "/" })
        database = path.isEmpty ? username : path
        let mode = query["sslmode"] ?? "prefer"
        guard let tls = TLSMode(rawValue: mode) else {
            throw ParseError(
                description: "sslmode '\(mode)' is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self.tls = tls
    }

    /// The URL with the password replaced, for logs and error messages.
    public var description: String {
        let credentials = password == nil ? username : "\(username):***"
        let location = socketDirectory.map { "?host=\($0)" } ?? ""
        return "postgres://\(credentials)@\(host):\(port)/\(database)\(location)"
    }

    /// The URL in full, password included, to hand to another process. Never log it; log `description`.
    public var connectionString: String {
        var components = URLComponents()
        components.scheme = "postgres"
        components.user = username
        components.password = password
        if host.contains(":") {
            components.percentEncodedHost = "[\(host)]"
        } else {
            components.host = host
        }
        components.port = port
        components.path = "/\(database)"
        var query = [URLQueryItem(name: "sslmode", value: tls.rawValue)]
        if let socketDirectory { query.append(URLQueryItem(name: "host", value: socketDirectory)) }
        components.queryItems = query
        return components.string ?? description
    }

    public func clientConfiguration(maxConnections: Int) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS =
                switch encryption {
                case nil: .disable
                case (let required, let configuration)?: required ? .require(configuration) : .prefer(configuration)
                }
            configuration = .init(
                host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = maxConnections
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// Connects once, outside any pool, runs `SELECT 1` and disconnects. Start-up's probe: a pool that cannot
    /// connect keeps retrying behind a waiting lease, which hides why (refused, unknown host, bad password).
    public func probe(logger: Logger) async throws {
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.any(), configuration: try connectionConfiguration(), id: 0,
            logger: logger
        ).get()
        do {
            _ = try await connection.query("SELECT 1", logger: logger).collect()
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            configuration = .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password,
                database: database)
        } else {
            let tls: PostgresConnection.Configuration.TLS =
                switch encryption {
                case nil: .disable
                case (let required, let configuration)?:
                    required
                        ? .require(try NIOSSLContext(configuration: configuration))
                        : .prefer(try NIOSSLContext(configuration: configuration))
                }
            configuration = .init(
                host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// The TLS `sslmode` asks for: none, or whether a server without TLS is refused and how certificates are checked.
    private var encryption: (required: Bool, configuration: TLSConfiguration)? {
        switch tls {
        case .disable: nil
        case .prefer: (false, Self.tlsConfiguration(verification: .none))
        case .require: (true, Self.tlsConfiguration(verification: .none))
        case .verifyCA: (true, Self.tlsConfiguration(verification: .noHostnameVerification))
        case .verifyFull: (true, Self.tlsConfiguration(verification: .fullVerification))
        }
    }

    private static func tlsConfiguration(verification: CertificateVerification) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = verification
        return configuration
    }

    /// The same server and credentials, another database (tests create one per case).
    public func with(database: String) -> DatabaseURL {
        var copy = self
        copy.database = database
        return copy
    }
}
