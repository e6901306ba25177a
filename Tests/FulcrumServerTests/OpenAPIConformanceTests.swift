import FulcrumCore
import FulcrumServer
import FulcrumStore
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// Every response a scenario gets is checked against the document served at /openapi.json, and the scenario must
/// reach every operation the document lists.
@Suite("OpenAPI document")
struct OpenAPIConformanceTests {
    final class Checker: Sendable {
        let document: OpenAPIDocument
        let seen = Mutex(Set<String>())
        let violations = Mutex([String]())

        init(_ document: OpenAPIDocument) { self.document = document }

        func check(
            _ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, body: String? = nil,
            token: String? = TestTokens.admin, headers extra: HTTPFields = [:]
        ) async throws -> JSONResponse {
            var headers: HTTPFields = [.contentType: "application/json"]
            if let token { headers[.authorization] = "Bearer \(token)" }
            headers.append(contentsOf: extra)
            let response = try await client.execute(
                uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
            let data = Data(response.body.readableBytesView)
            let isJSON = response.headers[.contentType]?.hasPrefix("application/json") ?? false
            let json = isJSON && !data.isEmpty ? try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) : nil
            let name = method.rawValue.lowercased()
            guard let operation = document.operation(method: name, path: path) else {
                violations.withLock { $0.append("\(method) \(path): not in the document") }
                return JSONResponse(status: response.status, headers: response.headers, json: json)
            }
            seen.withLock { _ = $0.insert("\(name) \(operation.template)") }
            let problems = document.validateResponse(
                method: name, path: path, status: Int(response.status.code), body: isJSON ? json : nil)
            violations.withLock { $0 += problems.map { "\(method) \(path) \(response.status.code): \($0)" } }
            return JSONResponse(status: response.status, headers: response.headers, json: json)
        }
    }

    @Test func everyRouteAnswersAsDocumented() async throws {
        let kind = StoreKind.available.last ?? .memory
        try await withApp(kind) { client in
            let document = try OpenAPIDocument(data: try await client.raw(.get, "/openapi.json"))
            let c = Checker(document)
            let worker = TestTokens.worker
            let gateway = TestTokens.gateway
            let expires = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3_600))

            _ = try await c.check(client, .get, "/healthz", token: nil)
            _ = try await c.check(client, .get, "/readyz", token: nil)
            _ = try await c.check(client, .get, "/openapi.json", token: nil)
            _ = try await c.check(client, .post, "/v1/units", body: unitJSON())
            _ = try await c.check(client, .post, "/v1/units", body: unitJSON())  // 409
            _ = try await c.check(client, .post, "/v1/units", body: #"{"id": "x"}"#)  // 400
            _ = try await c.check(client, .post, "/v1/units", body: unitJSON(id: "decode-0", role: "decode", nodes: 2))
            _ = try await c.check(client, .post, "/v1/units", body: unitJSON(id: "spare", nodes: 1))
            _ = try await c.check(client, .get, "/v1/units")
            _ = try await c.check(client, .get, "/v1/units/prefill-0")
            _ = try await c.check(client, .get, "/v1/units/nope")  // 404
            _ = try await c.check(client, .get, "/v1/units", token: nil)  // 401
            _ = try await c.check(client, .get, "/v1/units", token: worker)  // 403
            for gpu in 0..<2 {
                _ = try await c.check(client, .put, "/v1/workers/w\(gpu)", body: workerJSON(gpu: gpu), token: worker)
                _ = try await c.check(
                    client, .post, "/v1/workers/w\(gpu)/telemetry", body: prefillReport(seq: 1, hot: gpu), token: worker)
            }
            _ = try await c.check(client, .post, "/v1/workers/w0/telemetry", body: prefillReport(seq: 1), token: worker)
            _ = try await c.check(client, .put, "/v1/workers/d0", body: workerJSON(unit: "decode-0"), token: worker)
            _ = try await c.check(
                client, .post, "/v1/workers/d0/telemetry",
                body: #"{"seq": 1, "sentAt": "2026-11-22T10:00:00Z", "decode": {"kvTokensUsed": 1000, "kvTokensCapacity": 400000, "runningRequests": 2}}"#,
                token: worker)
            _ = try await c.check(client, .get, "/v1/workers")
            _ = try await c.check(client, .get, "/v1/workers/w0")
            _ = try await c.check(client, .get, "/v1/workers/w0/history")
            _ = try await c.check(client, .get, "/v1/workers/w0/placement", token: worker)
            _ = try await c.check(client, .get, "/v1/workers/w0/placement?wait=0", token: worker, headers: [.ifNoneMatch: "\"1\""])
            _ = try await c.check(client, .post, "/v1/workers/w0/placement/ack", body: #"{"version": 1}"#, token: worker)
            _ = try await c.check(client, .post, "/v1/workers/w0/placement/ack", body: #"{"version": 9}"#, token: worker)
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placement")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placement/status")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/load")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/expert-load")
            _ = try await c.check(client, .post, "/v1/units/prefill-0/rebalance", body: #"{"dryRun": true}"#)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/rebalance", body: #"{"reason": "test"}"#)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/rebalance", body: #"{"dryrun": true}"#)  // 400
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placements")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placements/1")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placements/99")  // 404
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placements/1/plan")
            _ = try await c.check(client, .get, "/v1/units/prefill-0/placements/99/plan")  // 404
            let table = try await c.check(client, .get, "/v1/units/prefill-0/placement")["phy2log"] as? [[Int]] ?? []
            let tableJSON = String(decoding: try JSONSerialization.data(withJSONObject: table), as: UTF8.self)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/placements", body: #"{"phy2log": \#(tableJSON)}"#)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/rollback", body: #"{"version": 1}"#)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/rollback", body: #"{"version": 1}"#, headers: [.ifMatch: "\"1\""])

            _ = try await c.check(
                client, .post, "/v1/prefill/assignments", body: #"{"requests": [{"id": "req-1", "inputTokens": 9000, "cachedTokens": 100}]}"#,
                token: gateway)
            _ = try await c.check(
                client, .post, "/v1/decode/assignments",
                body: #"{"requests": [{"id": "req-1", "contextTokens": 9100, "maxNewTokens": 100}, {"id": "huge", "contextTokens": 9000000}]}"#,
                token: gateway)
            _ = try await c.check(client, .post, "/v1/prefill/assignments", body: #"{"requests": []}"#, token: gateway)  // 400
            _ = try await c.check(client, .post, "/v1/requests/finished", body: #"{"ids": ["req-1", "ghost"]}"#, token: gateway)
            _ = try await c.check(client, .get, "/v1/requests/req-1", token: gateway)
            _ = try await c.check(client, .get, "/v1/requests/ghost", token: gateway)  // 404

            _ = try await c.check(client, .get, "/v1/units/prefill-0/controls")
            _ = try await c.check(client, .post, "/v1/units/prefill-0/balancers/attention/pause", body: #"{"reason": "check"}"#)
            _ = try await c.check(client, .post, "/v1/units/prefill-0/balancers/attention/resume")
            _ = try await c.check(client, .put, "/v1/units/prefill-0/policy", body: #"{"policy": {"minGain": 0.1, "maxMoves": 0}}"#)
            _ = try await c.check(client, .put, "/v1/units/prefill-0/policy", body: #"{"policy": {"minGain": 2}}"#)  // 400
            _ = try await c.check(
                client, .post, "/v1/units/prefill-0/expert-rules",
                body: #"{"kind": "forbid", "expert": 3, "rank": 1, "layer": 0, "expiresAt": "\#(expires)"}"#)
            _ = try await c.check(client, .put, "/v1/units/prefill-0/policy", body: #"{"policy": {}}"#, headers: [.ifMatch: "\"0\""])  // 412
            _ = try await c.check(client, .delete, "/v1/units/prefill-0/expert-rules/1")
            _ = try await c.check(client, .delete, "/v1/units/prefill-0/expert-rules/1")  // 404

            _ = try await c.check(client, .post, "/v1/workers/w1/cordon", body: #"{"reason": "maintenance"}"#)
            _ = try await c.check(client, .post, "/v1/workers/w1/uncordon")
            _ = try await c.check(client, .post, "/v1/workers/w1/drain", body: #"{"timeoutSeconds": 30}"#)
            _ = try await c.check(client, .post, "/v1/workers/w1/drain", headers: [.ifMatch: "\"1\""])  // 412
            _ = try await c.check(client, .post, "/v1/units/decode-0/cordon")
            _ = try await c.check(client, .post, "/v1/units/decode-0/uncordon")
            _ = try await c.check(client, .post, "/v1/units/decode-0/drain", body: #"{"timeoutSeconds": 0}"#)  // 400
            _ = try await c.check(client, .post, "/v1/units/decode-0/drain")
            _ = try await c.check(client, .get, "/v1/audit?limit=5")
            _ = try await c.check(client, .get, "/v1/audit?target=worker/w1&action=worker.cordon")
            _ = try await c.check(client, .get, "/v1/metrics", token: worker)
            _ = try await c.check(client, .get, "/v1/cluster", token: gateway)
            _ = try await c.check(client, .get, "/metrics", token: gateway)
            _ = try await c.check(client, .delete, "/v1/units/prefill-0")  // 409: live workers
            _ = try await c.check(client, .delete, "/v1/units/spare")

            let violations = c.violations.withLock { $0 }
            #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
            let seen = c.seen.withLock { $0 }
            let missing = document.operations.map { "\($0.method) \($0.template)" }.filter { !seen.contains($0) }
            #expect(missing.isEmpty, "operations the scenario never reached: \(missing)")
        }
    }
}
