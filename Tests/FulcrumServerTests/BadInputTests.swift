import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// Every route refuses bad input with a 4xx JSON error that names the field, and leaves the store unchanged.
@Suite("Bad input")
struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var body: String?
        var status: HTTPResponse.Status
        var code: String
        var field: String?
        var testDescription: String { "\(code) \(field ?? "") \(body?.prefix(40) ?? "nil")" }
    }

    static let validUnit = unitJSON()

    static func replacing(_ old: String, with new: String, in json: String = validUnit) -> String {
        json.replacingOccurrences(of: old, with: new)
    }

    static let unitCases: [Case] = [
        Case(body: nil, status: .badRequest, code: "missing_body"),
        Case(body: "{\"id\": ", status: .badRequest, code: "malformed_json"),
        Case(body: "not json", status: .badRequest, code: "malformed_json"),
        Case(body: "[]", status: .badRequest, code: "invalid_type"),
        Case(body: "{}", status: .badRequest, code: "missing_field", field: "id"),
        Case(body: replacing("\"nodes\": 4,", with: ""), status: .badRequest, code: "missing_field", field: "nodes"),
        Case(
            body: replacing("\"expertGroups\": 8", with: "\"expertGroupz\": 8"), status: .badRequest,
            code: "missing_field", field: "model.expertGroups"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": \"4\""), status: .badRequest, code: "invalid_type", field: "nodes"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": null"), status: .badRequest, code: "missing_field", field: "nodes"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": 2.5"), status: .badRequest, code: "invalid_type", field: "nodes"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": 1e30"), status: .badRequest, code: "invalid_type", field: "nodes"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": 0"), status: .badRequest, code: "invalid_field", field: "nodes"),
        Case(body: replacing("\"nodes\": 4", with: "\"nodes\": -4"), status: .badRequest, code: "invalid_field", field: "nodes"),
        Case(
            body: replacing("\"nodes\": 4", with: "\"nodes\": 1000000000000"), status: .badRequest,
            code: "invalid_field", field: "nodes"),
        Case(
            body: replacing("\"gpusPerNode\": 8", with: "\"gpusPerNode\": 1000000000000"), status: .badRequest,
            code: "invalid_field", field: "gpusPerNode"),
        Case(body: replacing("\"prefill\"", with: "\"gpu\""), status: .badRequest, code: "invalid_field", field: "role"),
        Case(body: replacing("\"prefill\"", with: "7"), status: .badRequest, code: "invalid_type", field: "role"),
        Case(body: replacing("\"prefill-0\"", with: "\"\""), status: .badRequest, code: "invalid_field", field: "id"),
        Case(
            body: replacing("\"prefill-0\"", with: "\"\(String(repeating: "x", count: 65))\""), status: .badRequest,
            code: "invalid_field", field: "id"),
        Case(body: replacing("\"prefill-0\"", with: "\"pre fill/0\""), status: .badRequest, code: "invalid_field", field: "id"),
        Case(
            body: replacing("\"redundantExperts\": 32", with: "\"redundantExperts\": 31"), status: .badRequest,
            code: "invalid_field", field: "redundantExperts"),
        Case(
            body: replacing("\"redundantExperts\": 32", with: "\"redundantExperts\": -32"), status: .badRequest,
            code: "invalid_field", field: "redundantExperts"),
        Case(
            body: replacing("\"expertGroups\": 8", with: "\"expertGroups\": 6"), status: .badRequest,
            code: "invalid_field", field: "model.expertGroups"),
        Case(
            body: replacing("\"moeLayers\": 58", with: "\"moeLayers\": 0"), status: .badRequest, code: "invalid_field",
            field: "model.moeLayers"),
        Case(
            body: replacing("\"routedExperts\": 256", with: "\"routedExperts\": -256"), status: .badRequest,
            code: "invalid_field", field: "model.routedExperts"),
        Case(
            body: replacing("\"model\": {", with: "\"model\": [], \"x\": {"), status: .badRequest,
            code: "invalid_type", field: "model"),
    ]

    /// One syntax for every body, whichever reader decodes it: a duplicate key, a leading zero or bytes that are not
    /// UTF-8 are refused on an admin route read with Codable, on the hot telemetry route and on an operator's action.
    @Test func everyRouteRefusesTheSameSyntax() async throws {
        try await withApp(.memory) { client in
            func send(_ method: HTTPRequest.Method, _ uri: String, _ bytes: [UInt8], token: String = TestTokens.admin) async throws
                -> JSONResponse
            {
                let response = try await client.execute(
                    uri: uri, method: method,
                    headers: [.contentType: "application/json", .authorization: "Bearer \(token)"],
                    body: ByteBuffer(bytes: bytes))
                let data = Data(response.body.readableBytesView)
                return JSONResponse(
                    status: response.status, headers: response.headers,
                    json: data.isEmpty ? nil : try JSONSerialization.jsonObject(with: data))
            }
            let unit = Array(Self.validUnit.utf8)
            let duplicate = Array(Self.replacing("\"nodes\": 4", with: "\"nodes\": 4, \"nodes\": 2").utf8)
            let leadingZero = Array(Self.replacing("\"nodes\": 4", with: "\"nodes\": 04").utf8)
            let notUTF8 = Array(Self.replacing("\"prefill-0\"", with: "\"prefill-\u{1}\"").utf8).map { $0 == 1 ? 0xFF : $0 }
            let nul = Array(Self.replacing("\"prefill-0\"", with: #""prefill-\u0000""#).utf8)
            for body in [duplicate, leadingZero, notUTF8, nul] {
                expectError(try await send(.post, "/v1/units", body), .badRequest, "malformed_json")
            }
            #expect((try await client.request(.get, "/v1/units")["units"] as? [Any])?.isEmpty == true)
            #expect(try await send(.post, "/v1/units", unit).status == .created)
            try await client.registerWorker("w0")

            let report = #"{"seq": 1, "sentAt": "2026-11-22T10:00:00Z", "prefill": {"queuedTokens": 5, "queuedRequests": 1, "attentionWork": 9}}"#
            for bad in [
                report.replacingOccurrences(of: #""seq": 1"#, with: #""seq": 1, "seq": 2"#),
                report.replacingOccurrences(of: #""queuedTokens": 5"#, with: #""queuedTokens": 05"#),
                report.replacingOccurrences(of: "}}", with: #"}, "finished": ["r\#u{1}"]}"#),
            ] {
                let bytes = Array(bad.utf8).map { $0 == 1 ? 0xC3 : $0 }
                expectError(try await send(.post, "/v1/workers/w0/telemetry", bytes, token: TestTokens.worker), .badRequest, "malformed_json")
            }
            #expect(try await send(.post, "/v1/workers/w0/telemetry", Array(report.utf8), token: TestTokens.worker).status == .accepted)

            // U+0000 cannot be stored (PostgreSQL's text refuses it): refused in any body, and in a gateway's
            // request id, where it once answered 200 and then failed every write of the writer's batch.
            let nulID = #"{"requests": [{"id": "r\u0000x", "inputTokens": 900}]}"#
            expectError(try await send(.post, "/v1/prefill/assignments", Array(nulID.utf8), token: TestTokens.gateway), .badRequest, "malformed_json")
            let cordon = #"{"reason": "a", "reason": "b"}"#
            for body in [cordon, #"{"reason": "ECC \u0000"}"#] {
                expectError(try await send(.post, "/v1/workers/w0/cordon", Array(body.utf8)), .badRequest, "malformed_json")
            }
            #expect(try await client.request(.get, "/v1/workers/w0")["state"] as? String == "active")
        }
    }

    @Test(arguments: unitCases)
    func createUnitRefuses(_ bad: Case) async throws {
        try await withApp(.memory) { client in
            expectError(try await client.request(.post, "/v1/units", body: bad.body), bad.status, bad.code, field: bad.field)
            let units = try await client.request(.get, "/v1/units")
            #expect((units["units"] as? [Any])?.isEmpty == true)
        }
    }

    static let workerCases: [Case] = [
        Case(body: nil, status: .badRequest, code: "missing_body"),
        Case(body: "{\"unit\"", status: .badRequest, code: "malformed_json"),
        Case(body: "{}", status: .badRequest, code: "missing_field", field: "unit"),
        Case(body: replacing("\"gpu\": 0,", with: "", in: workerJSON()), status: .badRequest, code: "missing_field", field: "gpu"),
        Case(
            body: replacing("\"kvTokens\": 400000, ", with: "", in: workerJSON()), status: .badRequest,
            code: "missing_field", field: "capacity.kvTokens"),
        Case(body: workerJSON(unit: "nope"), status: .notFound, code: "unit_not_found"),
        Case(body: workerJSON(unit: "bad unit"), status: .badRequest, code: "invalid_field", field: "unit"),
        Case(body: workerJSON(node: 4), status: .badRequest, code: "invalid_field", field: "node"),
        Case(body: workerJSON(node: -1), status: .badRequest, code: "invalid_field", field: "node"),
        Case(body: workerJSON(gpu: 8), status: .badRequest, code: "invalid_field", field: "gpu"),
        Case(body: workerJSON(gpu: 1_000_000_000_000), status: .badRequest, code: "invalid_field", field: "gpu"),
        Case(body: workerJSON(kvTokens: 0), status: .badRequest, code: "invalid_field", field: "capacity.kvTokens"),
        Case(
            body: workerJSON(kvTokens: 1_000_000_000_000), status: .badRequest, code: "invalid_field",
            field: "capacity.kvTokens"),
        Case(
            body: replacing("\"capacity\": {", with: "\"capacity\": 5, \"c\": {", in: workerJSON()),
            status: .badRequest, code: "invalid_type", field: "capacity"),
        Case(
            body: replacing("\"node\": 0", with: "\"node\": 99999999999999999999999", in: workerJSON()),
            status: .badRequest, code: "invalid_type", field: "node"),
    ]

    @Test(arguments: workerCases)
    func registerWorkerRefuses(_ bad: Case) async throws {
        try await withApp(.memory) { client in
            try await client.createUnit()
            expectError(
                try await client.request(.put, "/v1/workers/w0", body: bad.body), bad.status, bad.code, field: bad.field)
            let workers = try await client.request(.get, "/v1/workers")
            #expect((workers["workers"] as? [Any])?.isEmpty == true)
        }
    }

    @Test(arguments: StoreKind.available)
    func idsInPathsAreChecked(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await client.createUnit()
            let long = String(repeating: "w", count: 65)
            expectError(try await client.request(.put, "/v1/workers/\(long)", body: workerJSON()), .badRequest, "invalid_field", field: "worker")
            expectError(try await client.request(.put, "/v1/workers/bad%21id", body: workerJSON()), .badRequest, "invalid_field", field: "worker")
            expectError(try await client.request(.get, "/v1/workers/bad%21id"), .badRequest, "invalid_field", field: "worker")
            expectError(try await client.request(.get, "/v1/workers/\(long)/history"), .badRequest, "invalid_field", field: "worker")
            expectError(try await client.request(.get, "/v1/units/bad%20id"), .badRequest, "invalid_field", field: "unit")
            expectError(try await client.request(.delete, "/v1/units/\(long)"), .badRequest, "invalid_field", field: "unit")
            expectError(try await client.request(.get, "/v1/workers/ghost"), .notFound, "worker_not_found")
            expectError(try await client.request(.get, "/v1/workers/ghost/history"), .notFound, "worker_not_found")
            expectError(try await client.request(.get, "/v1/units/ghost"), .notFound, "unit_not_found")
            expectError(try await client.request(.delete, "/v1/units/ghost"), .notFound, "unit_not_found")
            #expect((try await client.request(.get, "/v1/workers")["workers"] as? [Any])?.isEmpty == true)
            #expect((try await client.request(.get, "/v1/units")["units"] as? [Any])?.count == 1)
        }
    }

    /// `%00` in a path or query is refused before any handler runs: an audit filter with it was a 500 from PostgreSQL.
    @Test(arguments: StoreKind.available)
    func nulInAPathOrQueryIsRefused(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            expectError(try await client.request(.get, "/v1/audit?action=x%00"), .badRequest, "invalid_field", field: "query")
            expectError(try await client.request(.get, "/v1/audit?target=worker/w%00"), .badRequest, "invalid_field", field: "query")
            expectError(try await client.request(.get, "/v1/requests/r%00x"), .badRequest, "invalid_field", field: "path")
            #expect(try await client.request(.get, "/v1/audit?action=x").status == .ok)
        }
    }

    @Test func workerListFiltersAreChecked() async throws {
        try await withApp(.memory) { client in
            try await client.createUnit()
            expectError(try await client.request(.get, "/v1/workers?state=zombie"), .badRequest, "invalid_field", field: "state")
            expectError(try await client.request(.get, "/v1/workers?unit=no%20spaces"), .badRequest, "invalid_field", field: "unit")
            expectError(try await client.request(.get, "/v1/workers?unit=ghost"), .notFound, "unit_not_found")
            // Empty values are no filter at all.
            #expect(try await client.request(.get, "/v1/workers?unit=&state=").status == .ok)
        }
    }

    @Test func oversizedBodiesAreRefusedOnEveryWriteRoute() async throws {
        try await withApp(.memory, maxBodyBytes: 1_024) { client in
            let padding = String(repeating: " ", count: 2_000)
            expectError(
                try await client.request(.post, "/v1/units", body: unitJSON() + padding), .contentTooLarge, "body_too_large")
            #expect(try await client.createUnit().status == .created)
            expectError(
                try await client.request(.put, "/v1/workers/w0", body: workerJSON() + padding), .contentTooLarge,
                "body_too_large")
            #expect((try await client.request(.get, "/v1/workers")["workers"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func unknownRoutesAndMethodsGetJSONErrors() async throws {
        try await withApp(.memory) { client in
            expectError(try await client.request(.get, "/v1/nothing-here"), .notFound, "not_found")
            let wrongMethod = try await client.request(.patch, "/v1/units")
            #expect([.notFound, .methodNotAllowed].contains(wrongMethod.status))
            #expect(wrongMethod.error != nil)
        }
    }
}
