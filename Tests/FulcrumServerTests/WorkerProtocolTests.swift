import FulcrumCore
import FulcrumServer
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The worker protocol over HTTP, as a worker with curl would use it.
@Suite("Worker protocol")
struct WorkerProtocolTests {
    /// A small unit: 2 nodes x 2 GPUs, 3 MoE layers, 8 experts + 4 redundant = 12 slots, 3 per GPU.
    static let unitBody = """
        {"id": "u", "role": "decode", "nodes": 2, "gpusPerNode": 2,
         "model": {"moeLayers": 3, "routedExperts": 8, "expertGroups": 2}, "redundantExperts": 4}
        """

    static func setUp(_ client: some TestClientProtocol, workers: Int = 4) async throws {
        #expect(try await client.request(.post, "/v1/units", body: unitBody).status == .created)
        for rank in 0..<workers {
            let status = try await client.request(
                .put, "/v1/workers/w\(rank)", body: workerJSON(unit: "u", node: rank / 2, gpu: rank % 2)
            ).status
            #expect(status == .created)
        }
    }

    static func telemetry(seq: Int, kv: Int = 1_000, capacity: Int = 400_000, slotTokens: String? = nil) -> String {
        let experts = slotTokens.map {
            #", "experts": {"windowStart": "2026-01-01T00:00:00Z", "windowEnd": "2026-01-01T00:00:01Z", "slotTokens": \#($0)}"#
        } ?? ""
        return """
            {"seq": \(seq), "sentAt": "2026-01-01T00:00:01.250Z",
             "decode": {"kvTokensUsed": \(kv), "kvTokensCapacity": \(capacity), "runningRequests": 3}\(experts)}
            """
    }

    static func configuration(timeout: Duration = .seconds(10)) -> FulcrumConfiguration {
        var configuration = FulcrumConfiguration(logLevel: .warning)
        configuration.workerTimeout = timeout
        configuration.telemetryStaleAfter = min(.seconds(2), timeout / 2)
        return configuration
    }

    @Test(arguments: StoreKind.available)
    func reportsAreAppliedOnceEvenWhenRetried(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await Self.setUp(client)
            let first = try await client.request(.post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 5, kv: 7_000))
            #expect(first.status == .accepted && first["accepted"] as? Bool == true && first["state"] as? String == "active")
            // The same report again (a retry after a timeout), then an older one: both ignored and counted.
            let retry = try await client.request(.post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 5, kv: 9_999))
            #expect(retry.status == .accepted && retry["accepted"] as? Bool == false && retry["lastSeq"] as? Int == 5)
            try await client.request(.post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 4, kv: 9_999))

            let worker = try await client.request(.get, "/v1/workers/w1")
            let telemetry = try #require(worker["telemetry"] as? [String: Any])
            #expect(telemetry["lastSeq"] as? Int == 5 && telemetry["duplicates"] as? Int == 2)
            #expect(telemetry["stale"] as? Bool == false)
            let decode = (telemetry["report"] as? [String: Any])?["decode"] as? [String: Any]
            #expect(decode?["kvTokensUsed"] as? Int == 7_000)

            // A restarted worker process registers again and may count from zero.
            try await client.registerWorker("w1", unit: "u", node: 0, gpu: 1)
            let fresh = try await client.request(.post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 0))
            #expect(fresh["accepted"] as? Bool == true)
        }
    }

    static let badTelemetry: [(String, HTTPResponse.Status, String, String?)] = [
        (telemetry(seq: -1), .badRequest, "invalid_field", "seq"),
        // Int64's top would leave the worker no later seq to report with.
        (telemetry(seq: Int.max), .badRequest, "invalid_field", "seq"),
        (telemetry(seq: (1 << 53) + 1), .badRequest, "invalid_field", "seq"),
        (telemetry(seq: 1, kv: -5), .badRequest, "invalid_field", "decode.kvTokensUsed"),
        (telemetry(seq: 1, kv: 500_001, capacity: 500_000), .badRequest, "invalid_field", "decode.kvTokensUsed"),
        (telemetry(seq: 1, slotTokens: "[[1, 2, 3], [4, 5, 6]]"), .badRequest, "invalid_field", "experts.slotTokens"),
        (telemetry(seq: 1, slotTokens: "[[1, 2, 3], [4, 5], [7, 8, 9]]"), .badRequest, "invalid_field", "experts.slotTokens[1]"),
        (telemetry(seq: 1, slotTokens: "[[1, 2, 3], [4, 5, 6], [7, -8, 9]]"), .badRequest, "invalid_field", "experts.slotTokens[2][1]"),
        (telemetry(seq: 1, slotTokens: "[\(Array(repeating: "[1, 2, 3]", count: 5_000).joined(separator: ","))]"),
         .badRequest, "invalid_field", "experts.slotTokens"),
        (telemetry(seq: 1, slotTokens: "[[1, 2, 3], [4, 5, 6], [7, 1e400, 9]]"), .badRequest, "invalid_type", "experts.slotTokens[2][1]"),
        (telemetry(seq: 1, slotTokens: "[[1, 2, 3], [4, 5, 6], [7, 2.5, 9]]"), .badRequest, "invalid_type", "experts.slotTokens[2][1]"),
        (#"{"seq": 99999999999999999999, "sentAt": "2026-01-01T00:00:00Z"}"#, .badRequest, "invalid_type", "seq"),
        (#"{"seq": "1", "sentAt": "2026-01-01T00:00:00Z"}"#, .badRequest, "invalid_type", "seq"),
        (#"{"seq": 1, "sentAt": "2026-01-01T00:00:00Z", "decode": 5}"#, .badRequest, "invalid_type", "decode"),
        (#"{"seq": 1, "sentAt": "2026-01-01T00:00:00Z", "decode": {"kvTokensUsed": 1}}"#, .badRequest, "missing_field", "decode.kvTokensCapacity"),
        (#"{"seq": 1, "sentAt": "2026-01-01T00:00:00Z",, }"#, .badRequest, "malformed_json", nil),
        ("[" + String(repeating: "[", count: 100) + String(repeating: "]", count: 101), .badRequest, "malformed_json", nil),
        ("[1, 2]", .badRequest, "invalid_type", nil),
        (#"{"sentAt": "2026-01-01T00:00:00Z"}"#, .badRequest, "missing_field", "seq"),
        (#"{"seq": 1, "sentAt": "yesterday"}"#, .badRequest, "invalid_field", "sentAt"),
        (#"{"seq": 1, "sentAt": "2026-01-01T00:00:00Z", "finished": [""]}"#, .badRequest, "invalid_field", "finished[0]"),
    ]

    @Test(arguments: 0..<badTelemetry.count)
    func badTelemetryIsRefusedAndNothingRecorded(index: Int) async throws {
        let (body, status, code, field) = Self.badTelemetry[index]
        try await withApp(.memory) { client in
            try await Self.setUp(client)
            expectError(try await client.request(.post, "/v1/workers/w0/telemetry", body: body), status, code, field: field)
            let worker = try await client.request(.get, "/v1/workers/w0")
            #expect((worker["telemetry"] as? [String: Any])?["lastSeq"] == nil)
        }
    }

    @Test func unknownWorkersAndBadPollsAreRefused() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client)
            expectError(try await client.request(.post, "/v1/workers/ghost/telemetry", body: Self.telemetry(seq: 1)), .notFound, "worker_not_found")
            expectError(try await client.request(.get, "/v1/workers/ghost/placement"), .notFound, "worker_not_found")
            expectError(try await client.request(.post, "/v1/workers/ghost/placement/ack", body: #"{"version": 1}"#), .notFound, "worker_not_found")
            for wait in ["-1", "121", "soon", "1e9"] {
                expectError(try await client.request(.get, "/v1/workers/w0/placement?wait=\(wait)"), .badRequest, "invalid_field", field: "wait")
            }
            let badTag = try await client.execute(uri: "/v1/workers/w0/placement", method: .get, headers: [.ifNoneMatch: "\"v7\"", .authorization: TestTokens.workerBearer])
            #expect(badTag.status == .badRequest)
            expectError(try await client.request(.post, "/v1/workers/w0/placement/ack", body: #"{"version": 0}"#), .badRequest, "invalid_field", field: "version")
            expectError(try await client.request(.post, "/v1/workers/w0/placement/ack", body: #"{"version": 2}"#), .conflict, "unknown_version", field: "version")
            expectError(try await client.request(.post, "/v1/workers/w0/placement/ack", body: #"{}"#), .badRequest, "missing_field", field: "version")
            let status = try await client.request(.get, "/v1/units/u/placement/status")
            #expect(status["unacknowledged"] as? Int == 4)
        }
    }

    @Test(arguments: StoreKind.available)
    func aNewUnitServesTheInitialPlacementAsVersionOne(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await Self.setUp(client)
            let response = try await client.execute(uri: "/v1/workers/w3/placement", method: .get, headers: [.authorization: TestTokens.workerBearer])
            #expect(response.status == .ok && response.headers[.eTag] == "\"1\"")
            let body = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            // Rank 3 owns slots 9, 10, 11, which hold experts 9 mod 8 = 1, 2, 3 in every layer.
            #expect(body?["slots"] as? [[Int]] == [[1, 2, 3], [1, 2, 3], [1, 2, 3]])
            #expect(body?["version"] as? Int == 1 && body?["state"] as? String == "active" && body?["rank"] as? Int == 3)
            let unchanged = try await client.execute(
                uri: "/v1/workers/w3/placement?wait=0", method: .get, headers: [.ifNoneMatch: "\"1\"", .authorization: TestTokens.workerBearer])
            #expect(unchanged.status == .notModified && unchanged.headers[.eTag] == "\"1\"")
            // A worker holding a version this unit does not have (the unit was re-created) gets the current one.
            let foreign = try await client.execute(
                uri: "/v1/workers/w3/placement?wait=5", method: .get, headers: [.ifNoneMatch: "\"7\"", .authorization: TestTokens.workerBearer])
            #expect(foreign.status == .ok && foreign.headers[.eTag] == "\"1\"")
        }
    }

    static let shiftedTable = "[" + Array(repeating: "[\((0..<12).map { String(($0 + 5) % 8) }.joined(separator: ","))]", count: 3).joined(separator: ",") + "]"

    @Test(arguments: StoreKind.available)
    func publishingWakesEveryParkedPollAtOnceAndAcksAreCounted(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await Self.setUp(client)
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: (Int, HTTPResponse.Status, [[Int]]?).self) { group in
                for rank in 0..<4 {
                    for _ in 0..<10 {
                        group.addTask {
                            let response = try await client.execute(
                                uri: "/v1/workers/w\(rank)/placement?wait=20", method: .get, headers: [.ifNoneMatch: "\"1\"", .authorization: TestTokens.workerBearer])
                            let body = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                            return (rank, response.status, body?["slots"] as? [[Int]])
                        }
                    }
                }
                // The 40 polls are parked (in flight, waiting) when the publish comes.
                #expect(try await waitUntil(within: .seconds(10)) { try await client.parkedPolls(unit: "u") == 40 })
                let published = try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": \#(Self.shiftedTable)}"#)
                #expect(published.status == .created && published["version"] as? Int == 2)
                var answered = 0
                for try await (rank, status, slots) in group {
                    answered += 1
                    #expect(status == .ok)
                    let expected = (rank * 3..<rank * 3 + 3).map { ($0 + 5) % 8 }
                    #expect(slots == [expected, expected, expected])
                }
                #expect(answered == 40)
            }
            #expect(ContinuousClock.now - started < .seconds(5))

            for rank in 0..<3 {
                let ack = try await client.request(.post, "/v1/workers/w\(rank)/placement/ack", body: #"{"version": 2}"#)
                #expect(ack.status == .ok && ack["ackedVersion"] as? Int == 2)
            }
            try await client.request(.post, "/v1/workers/w3/placement/ack", body: #"{"version": 1}"#)
            var status = try await client.request(.get, "/v1/units/u/placement/status")
            var current = try #require(status["current"] as? [String: Any])
            #expect(current["version"] as? Int == 2 && current["acked"] as? Int == 3 && current["live"] as? Bool == false)
            #expect(status["liveVersion"] as? Int == 1)
            try await client.request(.post, "/v1/workers/w3/placement/ack", body: #"{"version": 2}"#)
            status = try await client.request(.get, "/v1/units/u/placement/status")
            current = try #require(status["current"] as? [String: Any])
            #expect(current["live"] as? Bool == true && status["liveVersion"] as? Int == 2)
        }
    }

    @Test func invalidPlacementsAreRefused() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client)
            let missingExpert = "[" + Array(repeating: "[\(Array(repeating: "0", count: 12).joined(separator: ","))]", count: 3).joined(separator: ",") + "]"
            expectError(try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": \#(missingExpert)}"#), .badRequest, "invalid_field", field: "phy2log[0]")
            expectError(try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": [[1]]}"#), .badRequest, "invalid_field", field: "phy2log")
            expectError(try await client.request(.post, "/v1/units/ghost/placements", body: #"{"phy2log": [[1]]}"#), .notFound, "unit_not_found")
            #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 1)
        }
    }

    /// On a manual clock: the 10 s timeout passes when the test says so, however slowly the machine runs.
    @Test(arguments: StoreKind.available)
    func silentWorkersDieAndComeBackWhenTheyReport(kind: StoreKind) async throws {
        let configuration = Self.configuration(timeout: .seconds(10))
        let clock = ManualClock()
        let body: @Sendable (any TestClientProtocol) async throws -> Void = { client in
            try await Self.setUp(client, workers: 2)
            func state(_ worker: String) async throws -> String? {
                try await client.request(.get, "/v1/workers/\(worker)")["state"] as? String
            }
            // w0 reports every second; w1 falls silent. Nine seconds on, nobody is dead yet.
            for seq in 1...9 {
                try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: seq))
                clock.advance(by: .seconds(1))
            }
            #expect(try await state("w1") == "active")
            for seq in 10...12 {
                try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: seq))
                clock.advance(by: .seconds(1))
            }
            // w1 dies on the first sweep past 10 s; w0, last heard at 12 s, has 10 s more.
            #expect(try await advancing(clock, by: .milliseconds(10)) { try await state("w1") == "dead" })
            #expect(try await state("w0") == "active")
            let placement = try await client.request(.get, "/v1/workers/w1/placement")
            #expect(placement["state"] as? String == "dead")

            try await client.request(.post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 1))
            #expect(try await advancing(clock, by: .milliseconds(10)) { try await state("w1") == "active" })
            var changes: [[String: Any]] = []
            _ = try await advancing(clock, by: .milliseconds(10)) {
                changes = try await client.request(.get, "/v1/workers/w1/history")["changes"] as? [[String: Any]] ?? []
                return changes.count >= 3
            }
            #expect(changes.prefix(3).compactMap { $0["to"] as? String } == ["active", "dead", "active"])
            let reasons = changes.compactMap { $0["reason"] as? String }
            #expect(reasons.count >= 3 && reasons[1].hasPrefix("no telemetry for") && reasons[2] == "reported again")
        }
        switch kind {
        case .memory:
            try await runApp(configuration, clock: clock, body)
        case .postgres:
            try await withTestDatabase { url in
                var configuration = configuration
                configuration.database = url
                try await runApp(configuration, clock: clock, body)
            }
        }
    }

    @Test(arguments: StalenessPolicy.allCases)
    func theLoadViewShowsAgeStalenessAndEligibility(policy: StalenessPolicy) async throws {
        var configuration = Self.configuration(timeout: .seconds(10))
        configuration.telemetryStaleAfter = .milliseconds(300)
        configuration.stalenessPolicy = policy
        let clock = ManualClock()
        try await runApp(configuration, clock: clock) { client in
            try await Self.setUp(client, workers: 2)
            try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: 1, kv: 4_242))
            var load = try await client.request(.get, "/v1/units/u/load")
            var ranks = try #require(load["ranks"] as? [[String: Any]])
            #expect(ranks.map { $0["eligible"] as? Bool } == [true, false], "a rank that never reported is not trusted")
            #expect((ranks[0]["decode"] as? [String: Any])?["kvTokensUsed"] as? Int == 4_242)
            #expect(load["policy"] as? String == policy.rawValue && load["eligible"] as? Int == 1)
            clock.advance(by: .milliseconds(400))
            load = try await client.request(.get, "/v1/units/u/load")
            ranks = try #require(load["ranks"] as? [[String: Any]])
            #expect(ranks[0]["stale"] as? Bool == true)
            #expect(ranks[0]["eligible"] as? Bool == (policy == .lastPlusAssigned))
        }
    }

    @Test func expertLoadIsEstimatedWithThePlacementEachWorkerRan() async throws {
        try await withApp(.memory) { client in
            try await Self.setUp(client)
            // Version 1: slot i holds expert i mod 8. Rank 1 owns slots 3, 4, 5 (experts 3, 4, 5).
            try await client.request(
                .post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 1, slotTokens: "[[1, 2, 3], [0, 0, 0], [0, 0, 9]]"))
            // Version 2 moves every expert one slot along: slot i holds (i + 5) mod 8; rank 1 now runs 0, 1, 2.
            #expect(try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": \#(Self.shiftedTable)}"#).status == .created)
            try await client.request(.post, "/v1/workers/w1/placement/ack", body: #"{"version": 2}"#)
            try await client.request(
                .post, "/v1/workers/w1/telemetry", body: Self.telemetry(seq: 2, slotTokens: "[[10, 20, 30], [0, 0, 0], [0, 0, 0]]"))
            let load = try await client.request(.get, "/v1/units/u/expert-load")
            #expect(load["reports"] as? Int == 2 && load["totalTokens"] as? Double == 75)
            let weight = try #require(load["weight"] as? [[Double]])
            #expect(weight[0] == [10, 20, 30, 1, 2, 3, 0, 0])
            #expect(weight[2][5] == 9)
            expectError(try await client.request(.get, "/v1/units/ghost/expert-load"), .notFound, "unit_not_found")
        }
    }
}
