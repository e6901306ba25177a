import FulcrumCore
import FulcrumServer
import FulcrumStore
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@Suite("Authentication and roles")
struct AuthTests {
    /// A concrete path for a template of the OpenAPI document.
    static func path(for template: String) -> String {
        template.replacingOccurrences(of: "{unit}", with: "prefill-0").replacingOccurrences(of: "{worker}", with: "w0")
            .replacingOccurrences(of: "{version}", with: "1").replacingOccurrences(of: "{id}", with: "req-1")
            .replacingOccurrences(of: "{balancer}", with: "eplb").replacingOccurrences(of: "{rule}", with: "1")
    }

    static let tokens: [AccessRole: String] = [
        .admin: TestTokens.admin, .worker: TestTokens.worker, .gateway: TestTokens.gateway,
    ]

    /// Every /v1 operation of the document, tried with no token, a wrong token and each role's token: 401, 401,
    /// then 403 exactly for the roles the document does not list.
    @Test func everyRouteLetsInOnlyItsRoles() async throws {
        try await withApp(.memory) { client in
            let document = try OpenAPIDocument(data: try await client.raw(.get, "/openapi.json"))
            try await client.createUnit()
            try await client.registerWorker("w0")
            var checked = 0
            for (method, template) in document.operations where template.hasPrefix("/v1/") {
                let operation = try #require(document.operation(method: method, path: Self.path(for: template)))
                let roles = Set((operation.operation["x-fulcrum-roles"] as? [String] ?? []).compactMap(AccessRole.init))
                #expect(roles.contains(.admin), "\(method) \(template) lists no admin role")
                let httpMethod = try #require(HTTPRequest.Method(method.uppercased()))
                let path = Self.path(for: template)
                let anonymous = try await client.request(httpMethod, path, token: nil)
                expectError(anonymous, .unauthorized, "unauthorized")
                #expect(anonymous.headers[.wwwAuthenticate] == #"Bearer realm="fulcrum""#, "\(method) \(template)")
                expectError(try await client.request(httpMethod, path, token: "guess"), .unauthorized, "unauthorized")
                for role in [AccessRole.worker, .gateway] where !roles.contains(role) {
                    let refused = try await client.request(httpMethod, path, token: Self.tokens[role])
                    expectError(refused, .forbidden, "forbidden")
                }
                for role in roles where role != .admin {
                    let allowed = try await client.request(httpMethod, path, token: Self.tokens[role])
                    #expect(![401, 403].contains(allowed.status.code), "\(role) on \(method) \(template): \(allowed.status)")
                }
                checked += 1
            }
            #expect(checked >= 35)
        }
    }

    /// The scheme is case-insensitive (RFC 9110); anything else before the token, or a token off by a byte, is 401.
    @Test func theBearerSchemeIsCaseInsensitiveAndNothingElsePasses() async throws {
        try await withApp(.memory) { client in
            func status(_ authorization: String) async throws -> Int {
                try await client.execute(
                    uri: "/v1/units", method: .get, headers: [.authorization: authorization], body: nil
                ).status.code
            }
            for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
                let code = try await status("\(scheme) \(TestTokens.admin)")
                #expect(code == 200, "\(scheme)")
            }
            for bad in [
                "Basic \(TestTokens.admin)", "Bearer\(TestTokens.admin)", "Bearer  \(TestTokens.admin)",
                "Bearer \(TestTokens.admin)x", "Bearer \(TestTokens.admin.dropLast())", "Bearer", "Bearer ",
                "Bearar \(TestTokens.admin)",
            ] {
                let code = try await status(bad)
                #expect(code == 401, "\(bad)")
            }
        }
    }

    @Test func metricsAreOpenOrNeedAnyTokenAsConfigured() async throws {
        var configuration = FulcrumConfiguration(logLevel: .warning)
        try await runApp(configuration) { client in
            expectError(try await client.request(.get, "/v1/metrics", token: nil), .unauthorized, "unauthorized")
            #expect(try await client.request(.get, "/v1/metrics", token: TestTokens.worker).status == .ok)
            #expect(try await client.raw(.get, "/metrics", token: TestTokens.gateway).count > 0)
        }
        configuration.metricsAccess = .open
        try await runApp(configuration) { client in
            #expect(try await client.request(.get, "/v1/metrics", token: nil).status == .ok)
            #expect(try await client.request(.get, "/healthz", token: nil).status == .ok)
            // The rest of /v1 still needs a token.
            expectError(try await client.request(.get, "/v1/units", token: nil), .unauthorized, "unauthorized")
        }
    }

    @Test func withoutTokensOnlyTheDevStoreOnLoopbackStarts() async throws {
        try await runApp(FulcrumConfiguration(logLevel: .warning), authenticated: false) { client in
            #expect(try await client.request(.get, "/v1/units", token: nil).status == .ok)
            #expect(try await client.createUnit().status == .created)
            let audit = try await client.request(.get, "/v1/audit", token: nil)
            #expect(audit.status == .ok)
        }
        for configuration in [
            FulcrumConfiguration(host: "0.0.0.0", logLevel: .warning),
            FulcrumConfiguration(database: try DatabaseURL("postgres://u@127.0.0.1:1/db?sslmode=disable"), logLevel: .warning),
        ] {
            #expect(configuration.accessProblem != nil)
            await #expect(throws: FulcrumConfiguration.Problems.self) {
                _ = try await buildApplication(configuration, logger: TestDatabases.logger)
            }
        }
    }

    @Test func tokensComeFromTheEnvironmentAndAFileAsHashes() throws {
        let admin = AccessToken(name: "ops", role: .admin, secret: "s3cret")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
        try "# operators\n\(admin.line)\n\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let worker = AccessToken(name: "gpu", role: .worker, secret: "w")
        var flags = FulcrumConfiguration.Flags()
        flags["tokens-file"] = file.path
        let configuration = try FulcrumConfiguration.resolve(flags: flags, environment: ["FULCRUM_TOKENS": worker.line])
        #expect(Set(configuration.tokens) == [admin, worker])
        #expect(TokenBook(configuration.tokens).identify("s3cret")?.name == "ops")
        #expect(TokenBook(configuration.tokens).identify("s3cret ") == nil)
        #expect(TokenBook(configuration.tokens).identify("w")?.role == .worker)

        // A plaintext token where the hash belongs, an unknown role, a duplicate name: each named, none echoed.
        let bad = "ops:admin:s3cret,x:root:\(String(repeating: "a", count: 64)),\(admin.line),\(admin.line)"
        do {
            _ = try FulcrumConfiguration.resolve(flags: .init(), environment: ["FULCRUM_TOKENS": bad])
            Issue.record("bad tokens were accepted")
        } catch {
            #expect(error.messages.count == 3, "\(error.messages)")
            #expect(!error.description.contains("s3cret"))
            #expect(error.description.contains("SHA-256"))
        }
    }
}

extension TestClientProtocol {
    /// The raw body of a request.
    func raw(_ method: HTTPRequest.Method, _ uri: String, token: String? = TestTokens.admin) async throws -> Data {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        let response = try await execute(uri: uri, method: method, headers: headers, body: nil)
        return Data(response.body.readableBytesView)
    }
}
