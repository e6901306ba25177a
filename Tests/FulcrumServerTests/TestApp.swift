import FulcrumServer
import FulcrumStore
import FulcrumTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Runs `body` against the real application, built by the same `buildApplication` as `fulcrum serve`, on a
/// store of the given kind (PostgreSQL: a fresh migrated database of its own).
func withApp<Result: Sendable>(
    _ kind: StoreKind, maxBodyBytes: Int = 1 << 20, workerTimeout: Duration? = nil, clock: any ServiceClock = RealClock(),
    _ body: @Sendable @escaping (any TestClientProtocol) async throws -> Result
) async throws -> Result {
    switch kind {
    case .memory:
        var configuration = FulcrumConfiguration(logLevel: .warning, maxBodyBytes: maxBodyBytes)
        if let workerTimeout { configuration.workerTimeout = workerTimeout }
        return try await runApp(configuration, clock: clock, body)
    case .postgres:
        return try await withTestDatabase { url in
            var configuration = FulcrumConfiguration(
                database: url, databaseMaxConnections: 4, logLevel: .warning, maxBodyBytes: maxBodyBytes)
            if let workerTimeout { configuration.workerTimeout = workerTimeout }
            return try await runApp(configuration, clock: clock, body)
        }
    }
}

/// Runs the application with the test tokens (one per role) unless `authenticated` is false.
func runApp<Result: Sendable>(
    _ configuration: FulcrumConfiguration, authenticated: Bool = true, clock: any ServiceClock = RealClock(),
    _ body: @Sendable @escaping (any TestClientProtocol) async throws -> Result
) async throws -> Result {
    var configuration = configuration
    if authenticated, configuration.tokens.isEmpty { configuration.tokens = TestTokens.all }
    let app = try await buildApplication(configuration, logger: TestDatabases.logger, clock: clock)
    return try await app.test(.router) { client in
        try await waitUntilStarted(client)
        return try await body(client)
    }
}

/// Start-up (migrations, the registry's load) runs beside the server; a test starts once it has finished, as a
/// load balancer sends traffic once `/readyz` says so.
func waitUntilStarted(_ client: any TestClientProtocol) async throws {
    guard try await waitUntil(within: .seconds(30), { try await client.execute(uri: "/readyz", method: .get).status == .ok })
    else { throw NotStarted() }
}

struct NotStarted: Error {}

/// Moves `clock` on by `step` at a time, giving the loops it wakes a moment to run, until `condition` holds.
/// Small steps, repeated: a loop busy when one step came sleeps again from then, and the next step wakes it. The
/// real-time bound is only a backstop; the time the code under test reasons about is the clock's.
func advancing(
    _ clock: ManualClock, by step: Duration, within limit: Duration = .seconds(20), until condition: () async throws -> Bool
) async throws -> Bool {
    try await waitUntil(within: limit, every: .milliseconds(5)) {
        if try await condition() { return true }
        clock.advance(by: step)
        return false
    }
}

/// One token per role; requests send the admin one unless told otherwise.
enum TestTokens {
    static let admin = "test-admin-secret"
    static let worker = "test-worker-secret"
    static let gateway = "test-gateway-secret"
    static let all = [
        AccessToken(name: "alice", role: .admin, secret: admin),
        AccessToken(name: "gpu-agent", role: .worker, secret: worker),
        AccessToken(name: "router", role: .gateway, secret: gateway),
    ]
    static let workerBearer = "Bearer \(worker)"
    static var configuration: String { all.map(\.line).joined(separator: ",") }
}

/// A decoded response: status, and the JSON body as Foundation values for flexible assertions.
struct JSONResponse: @unchecked Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var json: Any?

    var object: [String: Any] { json as? [String: Any] ?? [:] }
    subscript(key: String) -> Any? { object[key] }

    /// The `{"error": {code, message, field}}` body, if this is one.
    var error: (code: String, message: String, field: String?)? {
        guard let detail = object["error"] as? [String: Any], let code = detail["code"] as? String,
            let message = detail["message"] as? String
        else { return nil }
        return (code, message, detail["field"] as? String)
    }
}

extension TestClientProtocol {
    /// Workers' placement polls of `unit` parked now, from `GET /v1/metrics`.
    func parkedPolls(unit: String) async throws -> Int {
        let units = try await request(.get, "/v1/metrics")["units"] as? [[String: Any]] ?? []
        let eplb = units.first { $0["unit"] as? String == unit }?["eplb"] as? [String: Any]
        return eplb?["parkedPolls"] as? Int ?? 0
    }

    /// The expert-parallel balancer's checks finished since start, from `GET /v1/metrics`.
    func eplbChecks() async throws -> Int {
        try await request(.get, "/v1/metrics")["eplbChecks"] as? Int ?? 0
    }

    /// A request with the admin token; `token: nil` sends none.
    @discardableResult
    func request(
        _ method: HTTPRequest.Method, _ uri: String, body: String? = nil, token: String? = TestTokens.admin,
        headers extra: HTTPFields = [:]
    ) async throws -> JSONResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        headers.append(contentsOf: extra)
        let response = try await execute(
            uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        let data = Data(response.body.readableBytesView)
        return JSONResponse(
            status: response.status, headers: response.headers,
            json: data.isEmpty ? nil : try JSONSerialization.jsonObject(with: data))
    }

    @discardableResult
    func createUnit(_ id: String = "prefill-0", nodes: Int = 4, gpusPerNode: Int = 8) async throws -> JSONResponse {
        try await request(.post, "/v1/units", body: unitJSON(id: id, nodes: nodes, gpusPerNode: gpusPerNode))
    }

    @discardableResult
    func registerWorker(_ id: String, unit: String = "prefill-0", node: Int = 0, gpu: Int = 0) async throws
        -> JSONResponse
    {
        try await request(.put, "/v1/workers/\(id)", body: workerJSON(unit: unit, node: node, gpu: gpu))
    }
}

func unitJSON(
    id: String = "prefill-0", role: String = "prefill", nodes: Int = 4, gpusPerNode: Int = 8, redundant: Int = 32
) -> String {
    """
    {"id": "\(id)", "role": "\(role)", "nodes": \(nodes), "gpusPerNode": \(gpusPerNode),
     "model": {"moeLayers": 58, "routedExperts": 256, "expertGroups": 8}, "redundantExperts": \(redundant)}
    """
}

func workerJSON(unit: String = "prefill-0", node: Int = 0, gpu: Int = 0, kvTokens: Int = 400_000) -> String {
    """
    {"unit": "\(unit)", "node": \(node), "gpu": \(gpu), "capacity": {"kvTokens": \(kvTokens), "maxBatchTokens": 16384}}
    """
}

/// Asserts a JSON error body with the given status, code and (when given) field.
func expectError(
    _ response: JSONResponse, _ status: HTTPResponse.Status, _ code: String, field: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(response.status == status, "status", sourceLocation: sourceLocation)
    guard let error = response.error else {
        Issue.record("no error body in \(String(describing: response.json))", sourceLocation: sourceLocation)
        return
    }
    #expect(error.code == code, "code; message: \(error.message)", sourceLocation: sourceLocation)
    #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
    if let field {
        #expect(error.field == field, "field; message: \(error.message)", sourceLocation: sourceLocation)
    }
    #expect(
        response.headers[.contentType]?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
}
