import FulcrumCore
import FulcrumSimulator
import FulcrumStore
import FulcrumTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

/// Three `fulcrum serve` processes on one PostgreSQL under a simulated cluster whose workers and gateway were given
/// all three addresses; the leader is killed with SIGKILL in the middle of the run.
@Suite(
    "Chaos: a simulated cluster through the leader's kill -9",
    .enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"), .serialized)
struct ChaosTests {
    typealias Server = ServeProcessTests.Server
    typealias HA = HighAvailabilityTests

    /// When each replica last answered a `/v1` call, and when one first answered after the kill.
    final class Answers: Sendable {
        let state = Mutex((last: [Int: ContinuousClock.Instant](), killedAt: ContinuousClock.Instant?.none,
            firstAfter: (port: Int, at: ContinuousClock.Instant)?.none))

        func answered(_ port: Int, at instant: ContinuousClock.Instant) {
            state.withLock { state in
                state.last[port] = instant
                if let killed = state.killedAt, instant > killed, state.firstAfter == nil { state.firstAfter = (port, instant) }
            }
        }
    }

    @Test func everyRequestFinishesAndNothingAcknowledgedIsLostWhenTheLeaderIsKilled() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the fulcrum executable first")
        try await withTestDatabase { url in
            let a = try Server(database: url, arguments: ["--replica-id", "a"] + HA.lease)
            let portA = try await a.port()
            let b = try Server(database: url, arguments: ["--replica-id", "b"] + HA.lease)
            let c = try Server(database: url, arguments: ["--replica-id", "c"] + HA.lease)
            let (portB, portC) = (try await b.listeningPort(), try await c.listeningPort())
            let ports = [portA, portB, portC]
            for port in [portB, portC] {
                #expect(try await waitUntil(within: .seconds(10)) {
                    HA.json(try await ServeProcessTests.closingGet(port, "/v1/cluster"))["leader"] as? String == "a"
                })
            }

            var settings = Simulation.Settings(
                // The standbys first: the simulator finds the leader as any client would.
                target: [portC, portB, portA].map { "http://127.0.0.1:\($0)" }.joined(separator: ","),
                trace: try WorkloadCatalog.requests("builtin", data: nil, seed: 11),
                workloads: ExpertWorkloads.builtin(seed: 11))
            settings.token = TestTokens.admin
            settings.duration = 14
            settings.maxOutputTokens = 300
            settings.drainTimeout = 60
            settings.printInterval = 2
            settings.rebalanceIntervalSeconds = 10
            let simulation = try Simulation(settings)
            let run = Task { try await simulation.run { print("chaos: \($0)") } }

            // Every 20 ms, each replica is asked for something only the leader answers.
            let answers = Answers()
            let probe = Task {
                while !Task.isCancelled {
                    for port in ports {
                        if let reply = try? await ServeProcessTests.closingGet(port, "/v1/units"), reply.hasPrefix("HTTP/1.1 200") {
                            answers.answered(port, at: .now)
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            defer { probe.cancel() }

            // What a acknowledges before it dies: the simulated units and workers, a placement version, an
            // operator's action and its audit entry.
            #expect(try await waitUntil(within: .seconds(30)) {
                (HA.json(try await ServeProcessTests.closingGet(portA, "/v1/workers?unit=sim-d0"))["workers"] as? [Any])?.count == 144
            })
            try await Task.sleep(for: .seconds(2))  // requests flow through a
            let (published, placement) = try await HA.republish(portA, "sim-d0")
            #expect(published == 201, "\(placement)")
            let policy = #"{"policy": {"windowSeconds": 20}, "reason": "chaos: before the kill"}"#
            #expect(try await ServeProcessTests.send("PUT", portA, "/v1/units/sim-p0/policy", body: policy).0 == 200)
            let versionBefore = try #require(try await HA.placementVersion(portA, "sim-d0"))
            let workersBefore = try #require(
                HA.json(try await ServeProcessTests.closingGet(portA, "/v1/workers"))["workers"] as? [[String: Any]])
            try await Task.sleep(for: .seconds(1))  // the run goes on under a for a while

            kill(a.process.processIdentifier, SIGKILL)
            answers.state.withLock { $0.killedAt = .now }
            let report = try await run.value
            let context = Comment(rawValue: report.text)

            // The failover: from a's last answer to the first answer of whichever took over.
            let (lastOfA, first) = answers.state.withLock { ($0.last[portA], $0.firstAfter) }
            let takeover = try #require(first, "no replica answered after the kill")
            let failover = takeover.at - (try #require(lastOfA))
            print("chaos: failover \(Int(failover.seconds * 1_000)) ms (a's last answer to \(takeover.port == portB ? "b" : "c")'s first; lease 1 s)")
            #expect(failover < .seconds(5))
            let leader = takeover.port

            // Every request was assigned and finished, through both phases, and Fulcrum's ledger says so.
            #expect(report.requests.arrived > 100, context)
            #expect(report.requests.unfinished == 0, context)
            #expect(report.requests.finished == report.requests.arrived, context)
            #expect(report.requests.ledgerChecked > 0 && report.requests.ledgerComplete == report.requests.ledgerChecked, context)
            #expect(report.leaderChanges > 0, context)
            // Every live worker applied its unit's newest placement, served by the new leader.
            for unit in report.placements.units {
                #expect(unit.live == true && unit.acked == unit.liveRanks, context)
            }

            // Nothing a acknowledged is missing on the new leader: units, workers, the placement version, the policy
            // and its audit entry; versions went on from a's, each published once.
            let units = try #require(HA.json(try await ServeProcessTests.closingGet(leader, "/v1/units"))["units"] as? [[String: Any]])
            #expect(Set(units.compactMap { $0["id"] as? String }) == ["sim-p0", "sim-d0"])
            let workersAfter = try #require(
                HA.json(try await ServeProcessTests.closingGet(leader, "/v1/workers"))["workers"] as? [[String: Any]])
            #expect(Set(workersAfter.compactMap { $0["id"] as? String }) == Set(workersBefore.compactMap { $0["id"] as? String }))
            #expect(workersAfter.count == 32 + 144)
            let controls = HA.json(try await ServeProcessTests.closingGet(leader, "/v1/units/sim-p0/controls"))
            #expect((controls["policy"] as? [String: Any])?["windowSeconds"] as? Double == 20, "\(controls)")
            let audit = try #require(
                HA.json(try await ServeProcessTests.closingGet(leader, "/v1/audit?target=unit/sim-p0&limit=500"))["entries"] as? [[String: Any]])
            #expect(audit.contains { ($0["reason"] as? String) == "chaos: before the kill" }, "\(audit)")
            let history = try #require(
                HA.json(try await ServeProcessTests.closingGet(leader, "/v1/units/sim-d0/placements?limit=500"))["placements"] as? [[String: Any]])
            let versions = history.compactMap { $0["version"] as? Int }.sorted()
            #expect(
                !versions.isEmpty && versions == Array((versions.first ?? 1)...(versions.last ?? 0)) && (versions.first ?? 9) <= 2,
                "every version once, none skipped: \(versions)")
            #expect((versions.last ?? 0) >= versionBefore)
            let current = try #require(report.placements.units.first { $0.unit == "sim-d0" })
            #expect(current.currentVersion == versions.last, context)
            _ = (b, c)
        }
    }
}
