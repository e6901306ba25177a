import FulcrumServer
import HTTPTypes
import Logging
import FulcrumTestSupport
import Foundation
import Testing

@Suite("Durability", .enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"))
struct RestartTests {
    @Test func unitsAndWorkersSurviveARestart() async throws {
        try await withTestDatabase { url in
            let configuration = FulcrumConfiguration(database: url, logLevel: .warning)
            let registeredAt = try await runApp(configuration) { client in
                #expect(try await client.createUnit().status == .created)
                #expect(try await client.registerWorker("w-3-1", node: 3, gpu: 1).status == .created)
                return try await client.request(.get, "/v1/workers/w-3-1")["registeredAt"] as? String
            }
            try await runApp(configuration) { client in
                let unit = try await client.request(.get, "/v1/units/prefill-0")
                #expect(unit.status == .ok && unit["slotsPerGpu"] as? Int == 9)
                let worker = try await client.request(.get, "/v1/workers/w-3-1")
                #expect(worker["rank"] as? Int == 25 && worker["registeredAt"] as? String == registeredAt)
                // Registering after the restart is a re-registration, not a new worker.
                #expect(try await client.registerWorker("w-3-1", node: 3, gpu: 1).status == .ok)
            }
        }
    }

    @Test func afterARestartWorkersAreOfUnknownAgeAndPlacementsAndAcksAreKept() async throws {
        try await withTestDatabase { url in
            // On a manual clock: the 3 s timeout passes when the test advances it, whatever the machine's load.
            var configuration = WorkerProtocolTests.configuration(timeout: .seconds(3))
            configuration.database = url
            let clock = ManualClock()
            try await runApp(configuration) { client in
                try await WorkerProtocolTests.setUp(client, workers: 2)
                try await client.request(.post, "/v1/workers/w0/telemetry", body: WorkerProtocolTests.telemetry(seq: 3))
                let table = WorkerProtocolTests.shiftedTable
                #expect(try await client.request(.post, "/v1/units/u/placements", body: #"{"phy2log": \#(table)}"#).status == .created)
                try await client.request(.post, "/v1/workers/w0/placement/ack", body: #"{"version": 2}"#)
                // No wait: stopping the app flushes the telemetry writer.
            }
            try await runApp(configuration, clock: clock) { client in
                let worker = try await client.request(.get, "/v1/workers/w0")
                let telemetry = try #require(worker["telemetry"] as? [String: Any])
                // Never healthy by default: no age, stale, until it reports again.
                #expect(worker["state"] as? String == "active")
                #expect(telemetry["ageSeconds"] == nil && telemetry["stale"] as? Bool == true)
                #expect(worker["ackedVersion"] as? Int == 2)
                #expect(try await client.request(.get, "/v1/units/u/placement")["version"] as? Int == 2)
                var state = ""
                _ = try await advancing(clock, by: .milliseconds(100)) {
                    state = try await client.request(.get, "/v1/workers/w0")["state"] as? String ?? ""
                    return state == "dead"
                }
                #expect(state == "dead")
                // Decided in memory at once; recorded in the store just after.
                var changes: [[String: Any]] = []
                _ = try await waitUntil(within: .seconds(10)) {
                    changes = try await client.request(.get, "/v1/workers/w0/history")["changes"] as? [[String: Any]] ?? []
                    return changes.count >= 2
                }
                #expect((changes.last?["reason"] as? String)?.hasPrefix("no telemetry since Fulcrum started") == true, "\(changes)")
            }
        }
    }

    /// The expert-load estimate survives a restart: the stored windows are folded back in at start-up, under the
    /// tables they were counted with.
    @Test func theExpertLoadEstimateSurvivesARestart() async throws {
        try await withTestDatabase { url in
            var configuration = WorkerProtocolTests.configuration()
            configuration.database = url
            let now = ISO8601DateFormatter().string(from: Date())
            let body = """
                {"seq": 1, "sentAt": "\(now)", "decode": {"kvTokensUsed": 1000, "kvTokensCapacity": 400000, "runningRequests": 3},
                 "experts": {"windowStart": "\(now)", "windowEnd": "\(now)", "slotTokens": [[5, 6, 7], [1, 1, 1], [0, 0, 9]]}}
                """
            let before = try await runApp(configuration) { client in
                try await WorkerProtocolTests.setUp(client, workers: 2)
                #expect(try await client.request(.post, "/v1/workers/w1/telemetry", body: body).status == .accepted)
                // No wait: stopping the app closes the open window and writes it.
                return try await client.request(.get, "/v1/units/u/expert-load")["weight"] as? [[Double]]
            }
            try await runApp(configuration) { client in
                let load = try await client.request(.get, "/v1/units/u/expert-load")
                #expect(load["reports"] as? Int == 1)
                #expect(load["weight"] as? [[Double]] == before && before?.joined().reduce(0, +) == 30)
            }
        }
    }
}
