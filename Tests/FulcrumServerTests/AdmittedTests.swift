import FulcrumServer
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

/// Reports that list `admitted` make the attention balancers' rank models exact: an assignment is added on top of a
/// report until a report says its engine took it in, however fast or slow reports come. Without the list the model
/// learns the worker's delivery lag from its reports' counts (`DeliveryLag`); a fixed settle time would be fooled by
/// these same sequences, as the comments say.
@Suite("Exact reconciliation with admitted")
struct AdmittedTests {
    typealias A = AssignmentTests

    /// A report sent at once after an assignment, whose figures already hold it: counted once. (By timing alone it
    /// would be counted twice: the report came within the settle time.)
    @Test func aReportFasterThanAnyTimeConstantNeverDoubleCounts() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await A.setUp(client, unit: "d", role: "decode", gpus: 1, kvTokens: 100_000)
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("a", 30_000)]))
            try await A.report(
                client, worker: "d-g0", role: "decode", seq: 2, queued: 30_000, capacity: 100_000, running: 1,
                admitted: ["a"])
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("b", 1_000)]))
            let b = try await A.rankTokens(client, "b")
            #expect(b >= 30_000 && b < 30_500, "\(b)")

            // A slow delivery: a report well past the settle time whose engine has not taken b in yet. b still
            // counts (by timing alone it would be taken as in the figures, and vanish).
            clock.advance(by: .milliseconds(400))
            try await A.report(
                client, worker: "d-g0", role: "decode", seq: 3, queued: 30_000, capacity: 100_000, running: 1,
                admitted: [])
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("c", 1_000)]))
            let c = try await A.rankTokens(client, "c")
            #expect(c >= 31_000 && c < 31_500, "\(c)")

            // b arrives with c: both leave what is added on top, nothing is counted twice.
            try await A.report(
                client, worker: "d-g0", role: "decode", seq: 4, queued: 32_000, capacity: 100_000, running: 3,
                admitted: ["c", "b", "someone-elses"])
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("e", 1_000)]))
            let e = try await A.rankTokens(client, "e")
            #expect(e >= 32_000 && e < 32_500, "\(e)")
        }
    }

    /// Two prefill batches between reports never herd: the first batch's prompt counts until its engine admits it,
    /// even when a report in between (sent before the prompt reached the engine) shows an empty queue.
    @Test func twoPrefillBatchesAroundAnEarlyReportNeverHerd() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await A.setUp(client, unit: "p", role: "prefill", gpus: 2)
            let first = try await client.request(
                .post, "/v1/prefill/assignments", body: A.prefillBatch(["a"]))
            let rank = try #require(A.ranks(first)["a"])
            clock.advance(by: .milliseconds(400))
            try await A.report(client, worker: "p-g\(rank)", role: "prefill", seq: 2, queued: 0, admitted: [])
            let second = try await client.request(.post, "/v1/prefill/assignments", body: A.prefillBatch(["b"]))
            #expect(A.ranks(second)["b"] == 1 - rank)

            // The engine admits a; a report shows it queued: still one prompt's worth on that rank, not two.
            try await A.report(client, worker: "p-g\(rank)", role: "prefill", seq: 3, queued: 4_000, admitted: ["a"])
            try await A.report(client, worker: "p-g\(1 - rank)", role: "prefill", seq: 2, queued: 4_000, admitted: ["b"])
            let third = try await client.request(.post, "/v1/prefill/assignments", body: A.prefillBatch(["c", "d"]))
            #expect(Set(A.ranks(third).values) == [0, 1])
            let c = try await A.rankTokens(client, "c")
            #expect(c == 4_000, "\(c)")
        }
    }

    @Test func admittedIsCheckedLikeFinished() async throws {
        try await withApp(.memory) { client in
            try await A.setUp(client, unit: "d", role: "decode", gpus: 1)
            func body(_ admitted: String) -> String {
                #"{"seq": 5, "sentAt": "\#(A.isoDate(Date()))", "decode": {"kvTokensUsed": 0, "kvTokensCapacity": 400000, "runningRequests": 0}, "admitted": \#(admitted)}"#
            }
            expectError(
                try await client.request(.post, "/v1/workers/d-g0/telemetry", body: body(#""a""#)), .badRequest,
                "invalid_type", field: "admitted")
            expectError(
                try await client.request(.post, "/v1/workers/d-g0/telemetry", body: body(#"["\#(String(repeating: "x", count: 129))"]"#)),
                .badRequest, "invalid_field", field: "admitted[0]")
            // Ids Fulcrum never assigned are no error: the report is applied, and they are counted.
            #expect(try await client.request(.post, "/v1/workers/d-g0/telemetry", body: body(#"["nobody", "no-one"]"#)).status == .accepted)
            let metrics = String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self)
            #expect(metrics.contains(#"fulcrum_telemetry_unknown_ids_total{list="admitted"} 2"#), "\(metrics)")
        }
    }
}

/// Without `admitted`: the learned lag keeps a fast loop and a slow one to what the engine holds.
@Suite("Learned delivery lag")
struct LearnedLagTests {
    typealias A = AssignmentTests

    /// Reports right after each assignment, each holding it: counted once (a fixed 250 ms settle would count every
    /// one twice).
    @Test func aFastLoopWithoutAdmittedCountsEachRequestOnce() async throws {
        try await withApp(.memory) { client in
            try await A.setUp(client, unit: "d", role: "decode", gpus: 1, kvTokens: 1_000_000)
            for index in 0..<5 {
                try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("r\(index)", 10_000)]))
                try await A.report(
                    client, worker: "d-g0", role: "decode", seq: index + 2, queued: (index + 1) * 10_000,
                    capacity: 1_000_000, running: index + 1)
            }
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("probe", 1_000)]))
            let tokens = try await A.rankTokens(client, "probe")
            #expect(tokens >= 50_000 && tokens < 51_000, "\(tokens)")
        }
    }

    /// A slow gateway: a report 400 ms after an assignment, whose engine has not taken it in yet, does not make it
    /// vanish (a fixed 250 ms settle would); the report that holds it takes over.
    @Test func aSlowLoopWithoutAdmittedKeepsWhatHasNotArrived() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await A.setUp(client, unit: "d", role: "decode", gpus: 1, kvTokens: 1_000_000)
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("a", 10_000)]))
            clock.advance(by: .milliseconds(400))
            try await A.report(client, worker: "d-g0", role: "decode", seq: 2, queued: 0, capacity: 1_000_000, running: 0)
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("b", 1_000)]))
            let b = try await A.rankTokens(client, "b")
            #expect(b >= 10_000 && b < 11_000, "\(b)")
            try await A.report(
                client, worker: "d-g0", role: "decode", seq: 3, queued: 11_000, capacity: 1_000_000, running: 2)
            try await client.request(.post, "/v1/decode/assignments", body: A.decodeBatch([("c", 1_000)]))
            let c = try await A.rankTokens(client, "c")
            #expect(c >= 11_000 && c < 12_000, "\(c)")
        }
    }
}
