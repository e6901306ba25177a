import FulcrumTestSupport
import Foundation
import HTTPTypes
import Testing

@Suite("Registry API")
struct RegistryRouteTests {
    @Test(arguments: StoreKind.available)
    func unitLifecycle(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            let created = try await client.createUnit()
            #expect(created.status == .created)
            #expect(created.headers[.location] == "/v1/units/prefill-0")
            #expect(created["slotsPerGpu"] as? Int == 9 && created["gpus"] as? Int == 32)
            #expect(created["slots"] as? Int == 288)
            #expect((created["createdAt"] as? String)?.hasSuffix("Z") == true)

            let decode = try await client.request(.post, "/v1/units", body: unitJSON(id: "decode-0", role: "decode", nodes: 18))
            #expect(decode.status == .created && decode["slotsPerGpu"] as? Int == 2)

            let list = try await client.request(.get, "/v1/units")
            let ids = (list["units"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(ids == ["decode-0", "prefill-0"])

            let shown = try await client.request(.get, "/v1/units/prefill-0")
            #expect(shown.status == .ok)
            let workers = try #require(shown["workers"] as? [String: [Any]])
            #expect(Set(workers.keys) == ["active", "cordoned", "draining", "drained", "dead"])

            #expect(try await client.request(.delete, "/v1/units/decode-0").status == .noContent)
            expectError(try await client.request(.get, "/v1/units/decode-0"), .notFound, "unit_not_found")
        }
    }

    @Test(arguments: StoreKind.available)
    func workerRegistrationIsIdempotentAndShowsUpEverywhere(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await client.createUnit()
            let first = try await client.registerWorker("p0-n1-g2", node: 1, gpu: 2)
            #expect(first.status == .created)
            #expect(first["rank"] as? Int == 10 && first["state"] as? String == "active")
            let again = try await client.registerWorker("p0-n1-g2", node: 1, gpu: 2)
            #expect(again.status == .ok)
            #expect(again["registeredAt"] as? String == first["registeredAt"] as? String)

            try await client.registerWorker("p0-n0-g0")
            let unit = try await client.request(.get, "/v1/units/prefill-0")
            let active = (unit["workers"] as? [String: [[String: Any]]])?["active"]?.compactMap { $0["id"] as? String }
            #expect(active == ["p0-n0-g0", "p0-n1-g2"])

            let filtered = try await client.request(.get, "/v1/workers?unit=prefill-0&state=active")
            #expect((filtered["workers"] as? [Any])?.count == 2)
            let none = try await client.request(.get, "/v1/workers?state=dead")
            #expect((none["workers"] as? [Any])?.isEmpty == true)

            let shown = try await client.request(.get, "/v1/workers/p0-n1-g2")
            #expect(shown["unit"] as? String == "prefill-0" && shown["node"] as? Int == 1)
            let capacity = shown["capacity"] as? [String: Int]
            #expect(capacity == ["kvTokens": 400_000, "maxBatchTokens": 16_384])

            let history = try await client.request(.get, "/v1/workers/p0-n1-g2/history")
            let changes = try #require(history["changes"] as? [[String: Any]])
            #expect(changes.count == 1 && changes.first?["reason"] as? String == "registered")
        }
    }

    @Test(arguments: StoreKind.available)
    func conflictsAreReportedAndChangeNothing(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await client.createUnit()
            expectError(try await client.createUnit(), .conflict, "unit_exists", field: "id")
            // Ids a client would resolve away as path segments are refused, not created and lost.
            for id in [".", ".."] { expectError(try await client.createUnit(id), .badRequest, "invalid_field", field: "id") }
            #expect((try await client.request(.get, "/v1/units")["units"] as? [[String: Any]])?.count == 1)

            try await client.registerWorker("holder", node: 2, gpu: 5)
            expectError(try await client.registerWorker("intruder", node: 2, gpu: 5), .conflict, "slot_taken")
            expectError(try await client.request(.get, "/v1/workers/intruder"), .notFound, "worker_not_found")

            expectError(try await client.request(.delete, "/v1/units/prefill-0"), .conflict, "unit_has_live_workers")
            #expect(try await client.request(.get, "/v1/units/prefill-0").status == .ok)
            #expect(try await client.request(.get, "/v1/workers/holder").status == .ok)
        }
    }
}
