import FulcrumCore
import FulcrumServer
import FulcrumStore
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import PostgresNIO
import Testing

/// A report with prefill figures and expert slot counts for a worker of `prefill-0` (58 layers x 9 slots).
func prefillReport(seq: Int, queuedRequests: Int = 2, hot: Int = 0) -> String {
    let row = (0..<9).map { $0 == hot ? "900" : "10" }.joined(separator: ",")
    let rows = Array(repeating: "[\(row)]", count: 58).joined(separator: ",")
    return """
        {"seq": \(seq), "sentAt": "2026-11-22T10:00:00Z",
         "prefill": {"queuedTokens": \(queuedRequests * 1000), "queuedRequests": \(queuedRequests), "attentionWork": \(queuedRequests * 500000)},
         "experts": {"windowStart": "2026-11-22T09:59:59Z", "windowEnd": "2026-11-22T10:00:00Z", "slotTokens": [\(rows)]}}
        """
}

@Suite("Operations: admin actions and the audit trail")
struct OperationsTests {
    func auditEntries(_ client: some TestClientProtocol, _ query: String = "") async throws -> [[String: Any]] {
        try await client.request(.get, "/v1/audit\(query)")["entries"] as? [[String: Any]] ?? []
    }

    @Test(arguments: StoreKind.available)
    func cordonAndDrainAWorkerWithOptimisticConcurrency(kind: StoreKind) async throws {
        let clock = ManualClock()
        try await withApp(kind, clock: clock) { client in
            try await client.createUnit()
            try await client.registerWorker("w0")
            let shown = try await client.request(.get, "/v1/workers/w0")
            let etag = try #require(shown.headers[.eTag])
            #expect(etag == "\"1\"")

            let cordoned = try await client.request(
                .post, "/v1/workers/w0/cordon", body: #"{"reason": "ECC errors"}"#, headers: [.ifMatch: etag])
            #expect(cordoned.status == .ok)
            #expect((cordoned["worker"] as? [String: Any])?["state"] as? String == "cordoned")
            #expect(cordoned.headers[.eTag] == "\"2\"")
            // A second operator who read the worker before the cordon is refused, and nothing is recorded.
            let before = try await auditEntries(client).count
            let stale = try await client.request(.post, "/v1/workers/w0/drain", headers: [.ifMatch: etag])
            expectError(stale, .preconditionFailed, "precondition_failed", field: "If-Match")
            #expect(stale.headers[.eTag] == "\"2\"")
            #expect(try await auditEntries(client).count == before)
            #expect(try await client.request(.get, "/v1/workers/w0")["state"] as? String == "cordoned")

            // A timeout that is not a number is the caller's mistake, named, and changes nothing.
            for bad in [#"{}"#, #""x""#, "[]", "true", "1744.5"] {
                for path in ["/v1/workers/w0/drain", "/v1/units/prefill-0/drain"] {
                    let refused = try await client.request(.post, path, body: #"{"timeoutSeconds": \#(bad)}"#)
                    expectError(refused, .badRequest, "invalid_type", field: "timeoutSeconds")
                }
            }
            #expect(try await auditEntries(client).count == before)
            #expect(try await client.request(.get, "/v1/workers/w0")["state"] as? String == "cordoned")

            // Drain: no new work; finished by a report that shows no request in flight.
            let draining = try await client.request(.post, "/v1/workers/w0/drain", body: #"{"timeoutSeconds": 60}"#)
            #expect((draining["worker"] as? [String: Any])?["state"] as? String == "draining")
            clock.advance(by: .milliseconds(300))  // past the settle time: the next report covers the drain
            #expect(try await client.request(.post, "/v1/workers/w0/telemetry", body: prefillReport(seq: 1, queuedRequests: 0), token: TestTokens.worker).status == .accepted)
            var worker = JSONResponse(status: .ok, headers: [:], json: nil)
            _ = try await advancing(clock, by: .milliseconds(50)) {
                worker = try await client.request(.get, "/v1/workers/w0")
                return worker["state"] as? String == "drained"
            }
            #expect(worker["state"] as? String == "drained")
            let drain = try #require(worker["drain"] as? [String: Any])
            #expect(drain["done"] as? Bool == true && drain["doneBy"] as? String == "idle" && drain["inFlight"] as? Int == 0)
            #expect(drain["by"] as? String == "alice")
            let history = try await client.request(.get, "/v1/workers/w0/history")["changes"] as? [[String: Any]] ?? []
            #expect(history.map { $0["to"] as? String } == ["active", "cordoned", "draining", "drained"])
            #expect(history[1]["reason"] as? String == "cordon by alice: ECC errors")

            let trail = try await auditEntries(client, "?target=worker/w0")
            #expect(trail.map { $0["action"] as? String } == ["worker.drain", "worker.cordon"])
            #expect(trail.last?["actor"] as? String == "alice" && trail.last?["reason"] as? String == "ECC errors")
            #expect((trail.last?["before"] as? [String: Any])?["state"] as? String == "active")

            #expect(try await client.request(.post, "/v1/workers/w0/uncordon").status == .ok)
            #expect(try await client.request(.get, "/v1/workers/w0")["state"] as? String == "active")
            expectError(try await client.request(.post, "/v1/workers/nobody/cordon"), .notFound, "worker_not_found")
        }
    }

    @Test func aDrainThatNeverEmptiesEndsAtItsDeadline() async throws {
        let clock = ManualClock()
        try await withApp(.memory, clock: clock) { client in
            try await client.createUnit()
            try await client.registerWorker("w0")
            #expect(try await client.request(.post, "/v1/units/prefill-0/drain", body: #"{"timeoutSeconds": 1}"#).status == .ok)
            clock.advance(by: .milliseconds(300))
            try await client.request(.post, "/v1/workers/w0/telemetry", body: prefillReport(seq: 1, queuedRequests: 3), token: TestTokens.worker)
            clock.advance(by: .milliseconds(500))
            // Three requests in flight: still draining before the deadline, however long the machine takes.
            #expect(try await client.request(.get, "/v1/workers/w0")["state"] as? String == "draining")
            var worker = JSONResponse(status: .ok, headers: [:], json: nil)
            _ = try await advancing(clock, by: .milliseconds(50)) {
                worker = try await client.request(.get, "/v1/workers/w0")
                return worker["state"] as? String == "drained"
            }
            #expect(worker["state"] as? String == "drained")
            #expect((worker["drain"] as? [String: Any])?["doneBy"] as? String == "timeout")
            #expect((worker["drain"] as? [String: Any])?["inFlight"] as? Int == 3)
            #expect(try await auditEntries(client, "?action=unit.drain").count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func policyIsValidatedVersionedAndAudited(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await client.createUnit()
            let initial = try await client.request(.get, "/v1/units/prefill-0/controls")
            #expect(initial["version"] as? Int == 0)
            #expect((initial["effective"] as? [String: Any])?["minGain"] as? Double == 0.05)
            for (body, field) in [
                (#"{"policy": {"minGain": 1.5}}"#, "policy.minGain"),
                (#"{"policy": {"rebalanceIntervalSeconds": -5}}"#, "policy.rebalanceIntervalSeconds"),
                (#"{"policy": {"maxMoves": -1}}"#, "policy.maxMoves"),
                (#"{"policy": {"windowSeconds": 5}}"#, "policy.windowSeconds"),
                (#"{"policy": {"stalePolicy": "maybe"}}"#, "policy.stalePolicy"),
                (#"{"policy": {"expertBytes": 0}}"#, "policy.expertBytes"),
                (#"{"policy": {"expertBytes": 17000000000}}"#, "policy.expertBytes"),
                (#"{"policy": {"expertBytes": "big"}}"#, "policy.expertBytes"),
                (#"{"policy": {"linkGBps": 0}}"#, "policy.linkGBps"),
                (#"{"policy": {"linkGBps": -3}}"#, "policy.linkGBps"),
                (#"{"policy": {"linkGBps": 1e9}}"#, "policy.linkGBps"),
                (#"{"policy": {"minGian": 0.1}}"#, "policy.minGian"),
                (#"{"polcy": {}}"#, "polcy"),
                (#"{}"#, "policy"),
            ] {
                let refused = try await client.request(.put, "/v1/units/prefill-0/policy", body: body)
                #expect(refused.status == .badRequest, "\(body)")
                #expect(refused.error?.field == field, "\(body): \(refused.error?.message ?? "")")
            }
            expectError(try await client.request(.put, "/v1/units/prefill-0/policy", body: "{"), .badRequest, "malformed_json")
            expectError(
                try await client.request(.put, "/v1/units/nope/policy", body: #"{"policy": {}}"#), .notFound,
                "unit_not_found")
            #expect(try await auditEntries(client).isEmpty)

            let updated = try await client.request(
                .put, "/v1/units/prefill-0/policy",
                body: #"{"policy": {"minGain": 0.2, "maxMoves": 500, "stalePolicy": "exclude", "windowSeconds": 60}, "reason": "calm"}"#,
                headers: [.ifMatch: "\"0\""])
            #expect(updated.status == .ok && updated.headers[.eTag] == "\"1\"")
            let effective = try #require(updated["effective"] as? [String: Any])
            #expect(effective["minGain"] as? Double == 0.2 && effective["maxMoves"] as? Int == 500)
            #expect(effective["stalePolicy"] as? String == "exclude" && effective["windowSeconds"] as? Double == 60)
            #expect(effective["rebalanceIntervalSeconds"] as? Double == 600)
            expectError(
                try await client.request(.put, "/v1/units/prefill-0/policy", body: #"{"policy": {}}"#, headers: [.ifMatch: "\"0\""]),
                .preconditionFailed, "precondition_failed")
            let trail = try await auditEntries(client, "?target=unit/prefill-0&action=policy.update")
            #expect(trail.count == 1)
            #expect(((trail.first?["after"] as? [String: Any])?["policy"] as? [String: Any])?["minGain"] as? Double == 0.2)
            #expect(((trail.first?["before"] as? [String: Any])?["version"] as? Int) == 0)
        }
    }

    @Test(arguments: StoreKind.available)
    func pausedBalancersFallBackOrPublishNothing(kind: StoreKind) async throws {
        try await withApp(kind) { client in
            try await client.createUnit()
            for gpu in 0..<4 {
                try await client.registerWorker("w\(gpu)", gpu: gpu)
                try await client.request(
                    .post, "/v1/workers/w\(gpu)/telemetry", body: prefillReport(seq: 1, queuedRequests: gpu), token: TestTokens.worker)
            }
            let paused = try await client.request(.post, "/v1/units/prefill-0/balancers/attention/pause", body: #"{"reason": "A/B"}"#)
            #expect((paused["paused"] as? [String: Any])?["attention"] as? Bool == true)
            let answer = try await client.request(
                .post, "/v1/prefill/assignments", body: #"{"requests": [{"id": "r1", "inputTokens": 5000}]}"#,
                token: TestTokens.gateway)
            let assignment = try #require((answer["assignments"] as? [[String: Any]])?.first)
            #expect(assignment["policy"] as? String == "least_tokens")
            #expect(assignment["rank"] as? Int == 0, "the rank with the fewest queued tokens")
            try await client.request(.post, "/v1/units/prefill-0/balancers/attention/resume")
            let resumed = try await client.request(
                .post, "/v1/prefill/assignments", body: #"{"requests": [{"id": "r2", "inputTokens": 5000}]}"#,
                token: TestTokens.gateway)
            #expect((resumed["assignments"] as? [[String: Any]])?.first?["policy"] as? String == "fulcrum")

            try await client.request(.post, "/v1/units/prefill-0/balancers/eplb/pause")
            expectError(
                try await client.request(.post, "/v1/units/prefill-0/rebalance", body: "{}"), .conflict, "balancer_paused")
            #expect(try await client.request(.post, "/v1/units/prefill-0/rebalance", body: #"{"dryRun": true}"#).status == .ok)
            expectError(
                try await client.request(.post, "/v1/units/prefill-0/balancers/nope/pause"), .notFound, "not_found",
                field: "balancer")
            let metrics = try await client.request(.get, "/v1/metrics")
            let unit = try #require((metrics["units"] as? [[String: Any]])?.first)
            #expect((unit["eplb"] as? [String: Any])?["paused"] as? Bool == true)
            #expect((unit["attention"] as? [String: Any])?["policy"] as? String == "fulcrum")
            #expect(try await auditEntries(client, "?action=balancer.pause").count == 2)
        }
    }

    @Test(arguments: StoreKind.available)
    func expertRulesAreHonouredByTheRebalancerAndRollbackMovesForward(kind: StoreKind) async throws {
        // On a manual clock: workers that report once outlive the test (a rank that died would be placed around, a
        // version of its own before the rollback), and the rebalancer's checks come when the test advances it.
        let clock = ManualClock()
        try await withApp(kind, workerTimeout: .seconds(120), clock: clock) { client in
            try await client.createUnit()
            for gpu in 0..<8 {
                try await client.registerWorker("w\(gpu)", gpu: gpu)
                try await client.request(
                    .post, "/v1/workers/w\(gpu)/telemetry", body: prefillReport(seq: 1, hot: gpu % 3), token: TestTokens.worker)
            }
            let expires = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3_600))
            let past = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-60))
            for (body, status, field) in [
                (#"{"kind": "forbid", "expert": 0, "rank": 1, "expiresAt": "\#(past)"}"#, HTTPResponse.Status.badRequest, "expiresAt"),
                (#"{"kind": "forbid", "expert": 256, "rank": 1, "expiresAt": "\#(expires)"}"#, .badRequest, "expert"),
                (#"{"kind": "forbid", "expert": 0, "rank": 32, "expiresAt": "\#(expires)"}"#, .badRequest, "rank"),
                (#"{"kind": "ban", "expert": 0, "rank": 1, "expiresAt": "\#(expires)"}"#, .badRequest, "kind"),
                (#"{"kind": "forbid", "expert": 0, "rank": 1}"#, .badRequest, "expiresAt"),
            ] {
                let refused = try await client.request(.post, "/v1/units/prefill-0/expert-rules", body: body)
                #expect(refused.status == status && refused.error?.field == field, "\(body)")
            }
            #expect(try await auditEntries(client).isEmpty)
            // Expert 0 is held by rank 0 in the initial table: forbid it there, and pin expert 5 on rank 1. Both at
            // once, as an operator would make them: with the balancer paused meanwhile (else it may act on the first
            // rule alone, then publish again for the second).
            try await client.request(.post, "/v1/units/prefill-0/balancers/eplb/pause", body: #"{"reason": "two rules"}"#)
            let forbid = try await client.request(
                .post, "/v1/units/prefill-0/expert-rules",
                body: #"{"kind": "forbid", "expert": 0, "rank": 0, "expiresAt": "\#(expires)", "reason": "ECC"}"#)
            #expect(forbid.status == .created)
            #expect(try await client.request(
                .post, "/v1/units/prefill-0/expert-rules",
                body: #"{"kind": "pin", "expert": 5, "rank": 1, "layer": 3, "expiresAt": "\#(expires)"}"#).status == .created)
            expectError(
                try await client.request(
                    .post, "/v1/units/prefill-0/expert-rules",
                    body: #"{"kind": "pin", "expert": 0, "rank": 0, "expiresAt": "\#(expires)"}"#), .conflict, "rule_conflict")
            try await client.request(.post, "/v1/units/prefill-0/balancers/eplb/resume")

            // The rebalancer acts on the rule change by itself at its next check.
            var placement = JSONResponse(status: .ok, headers: [:], json: nil)
            _ = try await advancing(clock, by: .milliseconds(100)) {
                placement = try await client.request(.get, "/v1/units/prefill-0/placement")
                return placement["version"] as? Int ?? 1 > 1
            }
            let table = try #require(placement["phy2log"] as? [[Int]])
            #expect(placement["version"] as? Int == 2)
            #expect(table.allSatisfy { !$0[0..<9].contains(0) }, "expert 0 is off rank 0 in every layer")
            #expect(table[3][9..<18].contains(5), "expert 5 is on rank 1 in layer 3")
            let history = try await client.request(.get, "/v1/units/prefill-0/placements")
            #expect((history["placements"] as? [[String: Any]])?.first?["trigger"] as? String == "expert_rule")

            // Roll back to version 1: published as version 3, workers only move forward.
            expectError(
                try await client.request(.post, "/v1/units/prefill-0/rollback", body: #"{"version": 1}"#, headers: [.ifMatch: "\"1\""]),
                .preconditionFailed, "precondition_failed")
            expectError(
                try await client.request(.post, "/v1/units/prefill-0/rollback", body: #"{"version": 9}"#), .notFound,
                "placement_not_found", field: "version")
            let rolled = try await client.request(
                .post, "/v1/units/prefill-0/rollback", body: #"{"version": 1, "reason": "bad table"}"#, headers: [.ifMatch: "\"2\""])
            let versions = try await client.request(.get, "/v1/units/prefill-0/placements")
            #expect(
                rolled.status == .created && rolled["version"] as? Int == 3 && rolled["rolledBackTo"] as? Int == 1,
                "\(rolled.status) \(rolled.error?.code ?? "") \(rolled.error?.message ?? ""); \((versions["placements"] as? [[String: Any]])?.map { "\($0["version"] ?? "") \($0["trigger"] ?? "")" } ?? [])")
            let three = try await client.request(.get, "/v1/units/prefill-0/placements/3")
            #expect(three["trigger"] as? String == "rollback")
            #expect((three["phy2log"] as? [[Int]])?.first?.prefix(3) == [0, 1, 2])
            let rollbacks = try await auditEntries(client, "?action=placement.rollback")
            #expect(rollbacks.count == 1 && rollbacks.first?["reason"] as? String == "bad table", "\(rollbacks)")

            let controls = try await client.request(.delete, "/v1/units/prefill-0/expert-rules/1")
            #expect((controls["expertRules"] as? [[String: Any]])?.map { $0["id"] as? Int } == [2])
            expectError(try await client.request(.delete, "/v1/units/prefill-0/expert-rules/1"), .notFound, "rule_not_found")
            let created = try await auditEntries(client, "?action=expert_rule.create")
            #expect(created.count == 2)
            // Paging: one entry a page, newest first, following nextBefore.
            let first = try await client.request(.get, "/v1/audit?limit=1")
            let next = try #require(first["nextBefore"] as? Int)
            let second = try await client.request(.get, "/v1/audit?limit=1&before=\(next)")
            #expect(((second["entries"] as? [[String: Any]])?.first?["id"] as? Int ?? 0) < next)
            expectError(try await client.request(.get, "/v1/audit?since=yesterday"), .badRequest, "invalid_field", field: "since")
            expectError(try await client.request(.get, "/v1/audit?limit=0"), .badRequest, "invalid_field", field: "limit")
        }
    }

    @Test(.enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
    func theAuditTableIsAppendOnly() async throws {
        try await withTestDatabase { url in
            try await withPostgresClient(url, logger: TestDatabases.logger) { client in
                let store = PostgresStore(client: client, migrations: try Migration.bundled(), logger: TestDatabases.logger)
                try await store.appendAudit(
                    AuditEntry(at: Date(), actor: "alice", action: "worker.cordon", target: "worker/w0", reason: nil, before: nil, after: nil))
                #expect(try await store.audit(AuditQuery()).count == 1)
                await #expect(throws: (any Error).self) {
                    try await client.query("UPDATE audit_log SET actor = 'mallory'")
                }
                await #expect(throws: (any Error).self) { try await client.query("DELETE FROM audit_log") }
                #expect(try await store.audit(AuditQuery()).first?.actor == "alice")
            }
        }
    }
}
