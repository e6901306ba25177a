import Foundation
import FulcrumServer
import FulcrumSimulator
import FulcrumStore
import FulcrumTestSupport
import Logging
import Testing

/// A short simulation against a real Fulcrum (every service running, HTTP on a real port) on a real PostgreSQL:
/// one prefill and one decode unit in DeepSeek's shapes, the built-in conversation workload and expert load
/// (outputs cut to 300 tokens, so the drain takes seconds, not minutes), and a worker killed early on.
@Suite("Simulated cluster end to end")
struct SimulationEndToEndTests {
    static let token = "simulation-admin-secret"

    @Test func everyRequestFinishesBalancedAndAKilledWorkerIsRoutedAround() async throws {
        let report = try await withTestDatabase { url in
            var configuration = FulcrumConfiguration(
                port: 0, database: url, databaseMaxConnections: 4, logLevel: .warning)
            configuration.tokens = [AccessToken(name: "simulator", role: .admin, secret: Self.token)]
            // 5 s: a simulated worker whose reports stall that long on two loaded cores is rare.
            configuration.workerTimeout = .seconds(5)
            configuration.telemetryStaleAfter = .seconds(1)
            return try await Serving.withLive(configuration, logger: TestDatabases.logger) { port in
                var settings = Simulation.Settings(
                    target: "http://127.0.0.1:\(port)",
                    trace: try WorkloadCatalog.requests("builtin", data: nil, seed: 1),
                    workloads: ExpertWorkloads.builtin(seed: 1))
                settings.token = Self.token
                settings.duration = 12
                settings.maxOutputTokens = 300
                settings.drainTimeout = 60
                settings.printInterval = 4
                settings.failures = [Failure(kind: .kill, at: 3)]
                return try await Simulation(settings).run { _ in }
            }
        }
        let context = Comment(rawValue: report.text)

        // Every request went through both balancers and finished, as Fulcrum's own ledger confirms.
        #expect(report.requests.arrived > 100, context)
        #expect(report.requests.unfinished == 0, context)
        #expect(report.requests.finished == report.requests.arrived, context)
        #expect(report.requests.ledgerChecked > 0, context)
        #expect(report.requests.ledgerComplete == report.requests.ledgerChecked, context)
        #expect(report.errors == 0, context)

        // Balance above a floor; the expert placement Fulcrum published beats the start-up table.
        #expect((report.balance.prefillEfficiency ?? 0) > 0.3, context)
        #expect((report.balance.decodeEfficiency ?? 0) > 0.6, context)
        let first = try #require(report.balance.expertBalancednessFirst, context)
        let last = try #require(report.balance.expertBalancednessLast, context)
        #expect(last < first * 0.8, context)

        // Every live worker acknowledged its unit's newest placement.
        #expect(report.placements.published >= 1, context)
        #expect(report.placements.liveUnits == 2, context)
        for unit in report.placements.units {
            #expect(unit.live == true && unit.acked == unit.liveRanks, context)
        }

        // The killed worker: marked dead within the timeout (plus a liveness pass), never assigned to after, and
        // left out of the placement its unit's survivors applied.
        let kill = try #require(report.failures.first, context)
        #expect(kill.worker == "sim-p0-n0-g5")
        #expect(kill.finalState == "dead", context)
        // Timed from the worker's last accepted report, the silence Fulcrum's 5 s timeout counts: timed from the
        // kill, a report answered late or a stalled report loop on a loaded machine moved it either way.
        #expect(kill.detectedAfterSeconds != nil, context)
        let silent = try #require(kill.silentSecondsAtDetection, context)
        // 5 s of silence, then up to one liveness pass (0.5 s) and one status poll (0.1 s); the last answer's way
        // back to the worker shortens it a little. The rest is slack for two loaded cores.
        #expect(silent > 4.5 && silent < 8, context)
        #expect(kill.assignedAfterDetection == 0, context)
        #expect(kill.excludedAfterSeconds != nil, context)
        let sim = try #require(report.placements.units.first { $0.unit == "sim-p0" })
        #expect(sim.liveRanks == 31, context)
        #expect(report.passed, context)
    }
}
