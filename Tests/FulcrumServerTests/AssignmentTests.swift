import FulcrumCore
import FulcrumServer
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

/// The attention balancers over HTTP, as a gateway and its workers use them.
@Suite("Attention assignment")
struct AssignmentTests {
    static func unitBody(_ id: String, role: String, gpus: Int) -> String {
        """
        {"id": "\(id)", "role": "\(role)", "nodes": 1, "gpusPerNode": \(gpus),
         "model": {"moeLayers": 2, "routedExperts": 8, "expertGroups": 1}, "redundantExperts": \(8 * gpus - 8)}
        """
    }

    static func isoDate(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// A unit of `gpus` ranks, each registered and reporting an empty queue (or cache).
    static func setUp(_ client: some TestClientProtocol, unit: String, role: String, gpus: Int, kvTokens: Int = 400_000) async throws {
        #expect(try await client.request(.post, "/v1/units", body: unitBody(unit, role: role, gpus: gpus)).status == .created)
        for gpu in 0..<gpus {
            let worker = "\(unit)-g\(gpu)"
            #expect(try await client.request(.put, "/v1/workers/\(worker)", body: workerJSON(unit: unit, node: 0, gpu: gpu, kvTokens: kvTokens)).status == .created)
            try await report(client, worker: worker, role: role, seq: 1, queued: 0, capacity: kvTokens)
        }
    }

    static func report(
        _ client: some TestClientProtocol, worker: String, role: String, seq: Int, queued: Int, work: Int = 0,
        capacity: Int = 400_000, running: Int = 0, sentAt: Date = Date(), finished: [String] = [],
        admitted: [String]? = nil
    ) async throws {
        let load =
            role == "prefill"
            ? #""prefill": {"queuedTokens": \#(queued), "queuedRequests": \#(queued > 0 ? 1 : 0), "attentionWork": \#(work)}"#
            : #""decode": {"kvTokensUsed": \#(queued), "kvTokensCapacity": \#(capacity), "runningRequests": \#(running)}"#
        let ids = finished.map { "\"\($0)\"" }.joined(separator: ",")
        let admittedMember = admitted.map { #", "admitted": [\#($0.map { "\"\($0)\"" }.joined(separator: ","))]"# } ?? ""
        let body = #"{"seq": \#(seq), "sentAt": "\#(isoDate(sentAt))", \#(load), "finished": [\#(ids)]\#(admittedMember)}"#
        let answer = try await client.request(.post, "/v1/workers/\(worker)/telemetry", body: body)
        #expect(answer.status == .accepted, "\(String(describing: answer.json))")
    }

    static func prefillBatch(_ ids: [String], tokens: Int = 4_000, cached: Int = 0) -> String {
        let items = ids.map { #"{"id": "\#($0)", "inputTokens": \#(tokens), "cachedTokens": \#(cached)}"# }
        return #"{"requests": [\#(items.joined(separator: ","))]}"#
    }

    static func decodeBatch(_ items: [(String, Int)], allowHold: Bool? = nil) -> String {
        #"{"requests": [\#(items.map { #"{"id": "\#($0.0)", "contextTokens": \#($0.1)}"# }.joined(separator: ","))]"#
            + (allowHold.map { #", "allowHold": \#($0)}"# } ?? "}")
    }

    static func ranks(_ response: JSONResponse) -> [String: Int] {
        let items = response["assignments"] as? [[String: Any]] ?? []
        return Dictionary(items.compactMap { item in (item["id"] as? String).map { ($0, item["rank"] as? Int ?? -1) } }, uniquingKeysWith: { a, _ in a })
    }

    @Test(arguments: StoreKind.available)
    func prefillBatchesSpreadWithoutHerdingAndRetriesGetTheSameAnswer(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await Self.setUp(client, unit: "p", role: "prefill", gpus: 4)
            let first = try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch((0..<8).map { "a\($0)" }))
            #expect(first.status == .ok)
            let placed = Self.ranks(first)
            #expect(placed.count == 8)
            #expect(Dictionary(grouping: placed.values, by: { $0 }).values.allSatisfy { $0.count == 2 })
            let item = try #require((first["assignments"] as? [[String: Any]])?.first)
            #expect(item["unit"] as? String == "p" && (item["worker"] as? String)?.hasPrefix("p-g") == true)

            // No report since: the next batch still sees the first one's queues.
            let second = try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch((0..<4).map { "b\($0)" }))
            #expect(Set(Self.ranks(second).values) == [0, 1, 2, 3])

            // A gateway retrying a batch (plus one new request) gets the same answers.
            let retry = try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch((0..<8).map { "a\($0)" } + ["c0"]))
            let retried = Self.ranks(retry)
            #expect(retried.filter { $0.key.hasPrefix("a") } == placed && retried["c0"] != nil)

            let lookup = try await client.request(.get, "/v1/requests/b0")
            let records = try #require(lookup["assignments"] as? [[String: Any]])
            #expect(records.count == 1 && records[0]["phase"] as? String == "prefill")
            #expect(records[0]["rankTokens"] as? Double == 8_000 && records[0]["inputTokens"] as? Int == 4_000)
            #expect(records[0]["policy"] as? String == "fulcrum" && records[0]["telemetryAgeSeconds"] is Double)
            expectError(try await client.request(.get, "/v1/requests/never"), .notFound, "request_not_found", field: "id")

            // A request id is the gateway's own text: percent-encoded in the path, it names the same request.
            _ = try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch(["a b", "é-1"]))
            #expect(try await client.request(.get, "/v1/requests/a%20b").status == .ok)
            #expect(try await client.request(.get, "/v1/requests/%C3%A9%2D1").status == .ok)
        }
    }

    @Test func aReportAbsorbsWhatItCoversAndTheRestIsAddedOnTop() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await Self.setUp(client, unit: "p", role: "prefill", gpus: 1)
            try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch(["x"], tokens: 4_000))
            // Received more than the settle time (250 ms) after the assignment, the report covers it: 1,000 of its
            // 4,000 tokens are left.
            clock.advance(by: .milliseconds(300))
            try await Self.report(client, worker: "p-g0", role: "prefill", seq: 2, queued: 1_000, work: 3_500_000)
            try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch(["y"], tokens: 2_000))
            let y = try await client.request(.get, "/v1/requests/y")
            #expect((y["assignments"] as? [[String: Any]])?.first?["rankTokens"] as? Double == 1_000)
            // Its prefill done, x leaves the queue: z sees only y.
            try await client.request(.post, "/v1/requests/finished", body: #"{"ids": ["x"]}"#)
            try await client.request(.post, "/v1/prefill/assignments", body: Self.prefillBatch(["z"], tokens: 2_000))
            let z = try await client.request(.get, "/v1/requests/z")
            #expect((z["assignments"] as? [[String: Any]])?.first?["rankTokens"] as? Double == 2_000)
            #expect((try await client.request(.get, "/v1/requests/x")["assignments"] as? [[String: Any]])?.first?["finishedAt"] != nil)
        }
    }

    @Test(arguments: StoreKind.available)
    func decodeKeepsWithinCapacityAndFinishedRequestsLeave(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await Self.setUp(client, unit: "d", role: "decode", gpus: 2, kvTokens: 100_000)
            let batch = try await client.request(
                .post, "/v1/decode/assignments", body: Self.decodeBatch([("big", 150_000), ("a", 60_000), ("b", 60_000)]))
            #expect(batch.status == .ok)
            let placed = Self.ranks(batch)
            #expect(placed["big"] == nil && placed["a"] != nil && placed["b"] != nil && placed["a"] != placed["b"])
            let errors = try #require(batch["errors"] as? [[String: Any]])
            #expect(errors.count == 1 && errors[0]["id"] as? String == "big" && errors[0]["index"] as? Int == 0)
            #expect(errors[0]["code"] as? String == "no_kv_capacity")
            // Both ranks hold 60,000 of 100,000: a 50,000-token request fits nowhere until one finishes. A gateway
            // that offers refused requests again is told so; any other gets a rank, whose engine queues it.
            let full = try await client.request(
                .post, "/v1/decode/assignments", body: Self.decodeBatch([("c", 50_000)], allowHold: true))
            let refusal = try #require((full["errors"] as? [[String: Any]])?.first)
            #expect(Self.ranks(full).isEmpty && refusal["code"] as? String == "no_kv_capacity")
            #expect((refusal["message"] as? String)?.contains("free now") == true)
            let queued = try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("q", 50_000)]))
            #expect(Self.ranks(queued)["q"] != nil && ((queued["errors"] as? [Any])?.isEmpty ?? true))
            let done = try await client.request(.post, "/v1/requests/finished", body: #"{"ids": ["a", "ghost"]}"#)
            #expect(done["finished"] as? Int == 1 && done["unknown"] as? [String] == ["ghost"])
            let after = try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("c", 50_000)]))
            #expect(Self.ranks(after)["c"] == placed["a"])
            let c = try await client.request(.get, "/v1/requests/c")
            let record = try #require((c["assignments"] as? [[String: Any]])?.first)
            #expect(record["phase"] as? String == "decode" && record["contextTokens"] as? Int == 50_000)
            // a's rank holds nothing else, or q if it was queued there.
            let held = Self.ranks(queued)["q"] == placed["a"] ? 50_000.0 : 0
            let tokens = record["rankTokens"] as? Double ?? .infinity
            #expect(tokens >= held && tokens < held + 1_000, "\(tokens)")
        }
    }

    static func rankTokens(_ client: some TestClientProtocol, _ id: String) async throws -> Double {
        let response = try await client.request(.get, "/v1/requests/\(id)")
        return (response["assignments"] as? [[String: Any]])?.last?["rankTokens"] as? Double ?? -1
    }

    @Test func finishesBetweenReportsComeOffAndReportsTakeOver() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await Self.setUp(client, unit: "d", role: "decode", gpus: 1, kvTokens: 100_000)
            try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("a", 30_000)]))
            // A report received past the settle time holds it.
            clock.advance(by: .milliseconds(300))
            try await Self.report(client, worker: "d-g0", role: "decode", seq: 2, queued: 30_000, capacity: 100_000, running: 1)
            try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("b", 10_000)]))
            #expect(try await Self.rankTokens(client, "b") >= 30_000)
            // a finishes: it comes off the reported figures until a report no longer holds it.
            try await client.request(.post, "/v1/requests/finished", body: #"{"ids": ["a"]}"#)
            try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("c", 1_000)]))
            let c = try await Self.rankTokens(client, "c")
            #expect(c > 9_900 && c < 10_500, "\(c)")
            // The next report holds c and says b finished (telemetry's own list).
            clock.advance(by: .milliseconds(300))
            try await Self.report(
                client, worker: "d-g0", role: "decode", seq: 3, queued: 1_000, capacity: 100_000, running: 1,
                finished: ["b"])
            try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("e", 1_000)]))
            let e = try await Self.rankTokens(client, "e")
            #expect(e >= 1_000 && e < 1_500, "\(e)")
            let b = try await client.request(.get, "/v1/requests/b")
            #expect((b["assignments"] as? [[String: Any]])?.first?["finishedAt"] != nil)
        }
    }

    static let badBatches: [(String, String, String)] = [
        (#"{"requests": []}"#, "invalid_field", "requests"),
        (#"{}"#, "missing_field", "requests"),
        (#"{"requests": [{"id": "a", "inputTokens": 0}]}"#, "invalid_field", "requests[0].inputTokens"),
        (#"{"requests": [{"id": "a", "inputTokens": 10, "cachedTokens": 10}]}"#, "invalid_field", "requests[0].cachedTokens"),
        (#"{"requests": [{"id": "a", "inputTokens": 10, "cachedTokens": -1}]}"#, "invalid_field", "requests[0].cachedTokens"),
        (#"{"requests": [{"id": "a", "inputTokens": 10}, {"id": "a", "inputTokens": 20}]}"#, "invalid_field", "requests[1].id"),
        (#"{"requests": [{"id": "", "inputTokens": 10}]}"#, "invalid_field", "requests[0].id"),
        (#"{"requests": [{"id": "a", "inputTokens": 1e30}]}"#, "invalid_type", "requests[0].inputTokens"),
        (#"{"requests": [{"id": "a", "inputTokens": 20000000}]}"#, "invalid_field", "requests[0].inputTokens"),
        (#"{"requests": [{"id": 7, "inputTokens": 10}]}"#, "invalid_type", "requests[0].id"),
        (#"{"requests": [5]}"#, "invalid_type", "requests[0]"),
        (#"{"requests": [{"id": "a", "inputTokens": 10, "cachedToken": 5}]}"#, "unknown_field", "requests[0].cachedToken"),
        (#"{"requests": [{"id": "a", "inputTokens": 10}], "allowHold": true}"#, "unknown_field", "allowHold"),
    ]

    @Test func badBatchesAreRefusedAndNothingIsRecorded() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client, unit: "p", role: "prefill", gpus: 2)
            try await Self.setUp(client, unit: "d", role: "decode", gpus: 2)
            for (body, code, field) in Self.badBatches {
                expectError(try await client.request(.post, "/v1/prefill/assignments", body: body), .badRequest, code, field: field)
            }
            let tooMany = Self.prefillBatch((0..<4_097).map { "r\($0)" })
            expectError(try await client.request(.post, "/v1/prefill/assignments", body: tooMany), .badRequest, "invalid_field", field: "requests")
            expectError(
                try await client.request(.post, "/v1/decode/assignments", body: #"{"requests": [{"id": "a", "contextTokens": 10, "maxNewTokens": 0}]}"#),
                .badRequest, "invalid_field", field: "requests[0].maxNewTokens")
            expectError(try await client.request(.post, "/v1/prefill/assignments?unit=ghost", body: Self.prefillBatch(["a"])), .notFound, "unit_not_found")
            expectError(try await client.request(.post, "/v1/prefill/assignments?unit=d", body: Self.prefillBatch(["a"])), .badRequest, "invalid_field", field: "unit")
            expectError(try await client.request(.post, "/v1/requests/finished", body: #"{"ids": []}"#), .badRequest, "invalid_field", field: "ids")
            expectError(try await client.request(.post, "/v1/requests/finished", body: #"{}"#), .badRequest, "missing_field", field: "ids")
            expectError(try await client.request(.get, "/v1/requests/a"), .notFound, "request_not_found")

            // A unit whose workers never reported has no rank to give work to.
            #expect(try await client.request(.post, "/v1/units", body: Self.unitBody("quiet", role: "prefill", gpus: 1)).status == .created)
            try await client.request(.put, "/v1/workers/quiet-g0", body: workerJSON(unit: "quiet", node: 0, gpu: 0))
            expectError(try await client.request(.post, "/v1/prefill/assignments?unit=quiet", body: Self.prefillBatch(["a"])), .serviceUnavailable, "no_eligible_workers", field: "unit")
            expectError(try await client.request(.get, "/v1/requests/a"), .notFound, "request_not_found")
        }
    }

    @Test func noEligibleWorkerOfARoleIsA503() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client, unit: "p", role: "prefill", gpus: 1)
            expectError(try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("a", 100)])), .serviceUnavailable, "no_eligible_workers")
        }
    }
}

extension AssignmentTests {
    @Test func decodeCachesGrowAtTheRanksMeasuredRate() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await Self.setUp(client, unit: "d", role: "decode", gpus: 1, kvTokens: 100_000)
            // Two running requests, 1,000 tokens/s between them, reported half a second ago: ~500 tokens more by now.
            let body = """
                {"seq": 2, "sentAt": "\(Self.isoDate(Date()))",
                 "decode": {"kvTokensUsed": 10000, "kvTokensCapacity": 100000, "runningRequests": 2, "tokensPerSecond": 1000}}
                """
            #expect(try await client.request(.post, "/v1/workers/d-g0/telemetry", body: body).status == .accepted)
            clock.advance(by: .milliseconds(500))
            try await client.request(.post, "/v1/decode/assignments", body: Self.decodeBatch([("a", 1_000)]))
            let tokens = try await Self.rankTokens(client, "a")
            #expect(tokens >= 10_490 && tokens < 10_800, "\(tokens)")
            let bad = body.replacingOccurrences(of: #""tokensPerSecond": 1000"#, with: #""tokensPerSecond": -1"#)
                .replacingOccurrences(of: #""seq": 2"#, with: #""seq": 3"#)
            expectError(try await client.request(.post, "/v1/workers/d-g0/telemetry", body: bad), .badRequest, "invalid_field", field: "decode.tokensPerSecond")
        }
    }
}

extension AssignmentTests {
    /// Holding back is for gateways that say they offer `held_back` requests again; any other gets a rank: the one
    /// where the request costs less, whose engine queues it until room frees.
    @Test func aRequestOnlyTheBusiestRankHasRoomForIsHeldBackOnlyForAGatewayThatAllowsIt() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client, unit: "d", role: "decode", gpus: 2, kvTokens: 100_000)
            try await Self.report(client, worker: "d-g0", role: "decode", seq: 2, queued: 50_000, capacity: 100_000, running: 300)
            try await Self.report(client, worker: "d-g1", role: "decode", seq: 2, queued: 99_500, capacity: 100_000, running: 5)
            let answer = try await client.request(
                .post, "/v1/decode/assignments", body: Self.decodeBatch([("a", 2_000)], allowHold: true))
            #expect(answer.status == .ok && Self.ranks(answer).isEmpty)
            let error = (answer["errors"] as? [[String: Any]])?.first
            #expect(error?["code"] as? String == "held_back" && error?["id"] as? String == "a")
            expectError(try await client.request(.get, "/v1/requests/a"), .notFound, "request_not_found")

            for body in [Self.decodeBatch([("b", 2_000)]), Self.decodeBatch([("c", 2_000)], allowHold: false)] {
                let placed = try await client.request(.post, "/v1/decode/assignments", body: body)
                #expect(placed.status == .ok && (placed["errors"] as? [[String: Any]] ?? []).isEmpty)
                #expect(Self.ranks(placed).values.first == 1)
            }
            let bad = #"{"requests": [{"id": "d", "contextTokens": 10}], "allowHold": "yes"}"#
            expectError(
                try await client.request(.post, "/v1/decode/assignments", body: bad), .badRequest, "invalid_type",
                field: "allowHold")
            let typo = #"{"requests": [{"id": "d", "contextTokens": 10}], "allowhold": true}"#
            expectError(
                try await client.request(.post, "/v1/decode/assignments", body: typo), .badRequest, "unknown_field",
                field: "allowhold")
            expectError(try await client.request(.get, "/v1/requests/d"), .notFound, "request_not_found")
        }
    }
}
