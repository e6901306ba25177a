import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import PostgresNIO
import Synchronization
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Several `fulcrum serve` processes on one PostgreSQL: one leads, the others stand by and point at it, and a
/// standby takes over when the leader is killed or stopped, with what the leader acknowledged.
@Suite(
    "High availability: replicas, a leader, failover",
    .enabled(if: TestDatabases.serverURL != nil, "needs PostgreSQL: DATABASE_URL, which scripts/test sets"), .serialized)
struct HighAvailabilityTests {
    typealias Server = ServeProcessTests.Server
    static let lease = ["--lease", "1s", "--lease-renewal", "250ms"]

    static func json(_ answer: String) -> [String: Any] {
        guard let start = answer.range(of: "\r\n\r\n") else { return [:] }
        let body = Data(answer[start.upperBound...].utf8)
        return (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    static func placementVersion(_ port: Int, _ unit: String) async throws -> Int? {
        json(try await ServeProcessTests.closingGet(port, "/v1/units/\(unit)/placement"))["version"] as? Int
    }

    /// w0's telemetry report to the replica on `port`: its status.
    static func report(_ port: Int, seq: Int, finished: [String] = []) async throws -> Int {
        let ids = finished.map { "\"\($0)\"" }.joined(separator: ",")
        let body =
            #"{"seq": \#(seq), "sentAt": "\#(AssignmentTests.isoDate(Date()))", "prefill": {"queuedTokens": 0, "queuedRequests": 0, "attentionWork": 0}, "finished": [\#(ids)]}"#
        return try await ServeProcessTests.send("POST", port, "/v1/workers/w0/telemetry", body: body, bearer: TestTokens.workerBearer).0
    }

    /// The worker and rank of the first assignment of an answer.
    static func assignment(_ data: Data) -> String? {
        let assignments = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["assignments"] as? [[String: Any]]
        guard let first = assignments?.first, let worker = first["worker"] as? String, let rank = first["rank"] as? Int else { return nil }
        return "\(worker)#\(rank)"
    }

    /// Publishes the unit's current table again as a new version, on `port`.
    static func republish(_ port: Int, _ unit: String) async throws -> (Int, [String: Any]) {
        let current = json(try await ServeProcessTests.closingGet(port, "/v1/units/\(unit)/placement"))
        let table = try #require(current["phy2log"] as? [[Int]])
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["phy2log": table]), as: UTF8.self)
        let (status, data) = try await ServeProcessTests.send("POST", port, "/v1/units/\(unit)/placements", body: body)
        return (status, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    @Test func theLeaderKilledIsReplacedWithinTheLeaseAndNothingAcknowledgedIsLost() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the fulcrum executable first")
        try await withTestDatabase { url in
            let a = try Server(database: url, arguments: ["--replica-id", "a"] + Self.lease)
            let portA = try await a.port()
            let b = try Server(database: url, arguments: ["--replica-id", "b"] + Self.lease)
            let portB = try await b.listeningPort()

            // b stands by: alive, not ready, and every /v1 call is told where the leader is.
            #expect(try await waitUntil(within: .seconds(10)) {
                Self.json(try await ServeProcessTests.closingGet(portB, "/v1/cluster"))["leader"] as? String == "a"
            })
            let cluster = Self.json(try await ServeProcessTests.closingGet(portB, "/v1/cluster"))
            #expect(cluster["leading"] as? Bool == false && cluster["leaderURL"] as? String == "http://127.0.0.1:\(portA)")
            #expect((cluster["replicas"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["a", "b"])
            #expect(try await ServeProcessTests.send("GET", portB, "/healthz").0 == 200)
            #expect(try await ServeProcessTests.send("GET", portB, "/readyz").0 == 503)
            let refused = try await ServeProcessTests.closingGet(portB, "/v1/units")
            #expect(refused.hasPrefix("HTTP/1.1 503") && refused.contains(#""code":"not_leader""#), "\(refused)")
            #expect(refused.lowercased().contains("fulcrum-leader: http://127.0.0.1:\(portA)"), "\(refused)")

            // What a acknowledges: a unit, a worker, a placement version.
            #expect(try await ServeProcessTests.send("POST", portA, "/v1/units", body: unitJSON()).0 == 201)
            #expect(try await ServeProcessTests.send("PUT", portA, "/v1/workers/w0", body: workerJSON()).0 == 201)
            let (published, first) = try await Self.republish(portA, "prefill-0")
            #expect(published == 201 && first["version"] as? Int == 2)
            // An assignment a answered and wrote to its ledger: b answers its retry the same and records its finish.
            let batch = #"{"requests": [{"id": "retried-1", "inputTokens": 4000}]}"#
            #expect(try await Self.report(portA, seq: 1) == 202)
            let (assigned, answer) = try await ServeProcessTests.send("POST", portA, "/v1/prefill/assignments", body: batch)
            #expect(assigned == 200, "\(String(decoding: answer, as: UTF8.self))")
            // Written by a's writer (GET /v1/requests would answer from its buffer too).
            #expect(try await waitUntil(within: .seconds(10)) {
                try await withPostgresClient(url, maxConnections: 1, logger: TestDatabases.logger) { client in
                    let rows = try await client.query("SELECT count(*) FROM assignments WHERE request_id = 'retried-1'")
                    return try await rows.collect().first?.decode(Int.self) == 1
                }
            })

            // kill -9: b leads once the lease has run out, well within 5 s.
            kill(a.process.processIdentifier, SIGKILL)
            let killed = ContinuousClock.now
            #expect(try await waitUntil(within: .seconds(10)) { try await ServeProcessTests.send("GET", portB, "/readyz").0 == 200 })
            let failover = ContinuousClock.now - killed
            print("failover after kill -9: \(Int(failover.seconds * 1_000)) ms (lease 1 s)")
            #expect(failover < .seconds(5))
            #expect(try await ServeProcessTests.send("GET", portB, "/v1/units/prefill-0").0 == 200)
            #expect(try await ServeProcessTests.send("GET", portB, "/v1/workers/w0").0 == 200)
            // Versions go on from the last published, never repeated.
            #expect(try await Self.placementVersion(portB, "prefill-0") == 2)
            let (again, second) = try await Self.republish(portB, "prefill-0")
            #expect(again == 201 && second["version"] as? Int == 3)
            let (retried, sameAnswer) = try await ServeProcessTests.send("POST", portB, "/v1/prefill/assignments", body: batch)
            #expect(
                retried == 200 && Self.assignment(sameAnswer) == Self.assignment(answer) && Self.assignment(answer) != nil,
                "\(String(decoding: answer, as: UTF8.self)) then \(String(decoding: sameAnswer, as: UTF8.self))")
            #expect(try await Self.report(portB, seq: 2, finished: ["retried-1"]) == 202)
            #expect(try await waitUntil(within: .seconds(10)) {
                let (_, data) = try await ServeProcessTests.send("GET", portB, "/v1/requests/retried-1")
                let assignments = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["assignments"] as? [[String: Any]]
                return assignments?.first?["finishedAt"] is String
            })

            // a comes back (the same id, once its old record has aged out) as a standby pointing at b.
            let a2 = try Server(database: url, arguments: ["--replica-id", "a"] + Self.lease)
            let portA2 = try await a2.listeningPort()
            #expect(try await waitUntil(within: .seconds(10)) {
                Self.json(try await ServeProcessTests.closingGet(portA2, "/v1/cluster"))["leader"] as? String == "b"
            })
            #expect(try await ServeProcessTests.closingGet(portA2, "/v1/units").contains(#""code":"not_leader""#))

            // A planned stop hands the lease over at once, without waiting for it to run out.
            b.process.terminate()
            let stopped = ContinuousClock.now
            #expect(try await waitUntil(within: .seconds(10)) { try await ServeProcessTests.send("GET", portA2, "/readyz").0 == 200 })
            let handover = ContinuousClock.now - stopped
            print("hand-over after SIGTERM: \(Int(handover.seconds * 1_000)) ms")
            #expect(try await b.waitForExit(within: .seconds(10)) == 0)
            #expect(try await Self.placementVersion(portA2, "prefill-0") == 3)
            a2.process.terminate()
            #expect(try await a2.waitForExit(within: .seconds(10)) == 0)
        }
    }

    /// A replica's `/v1` answers (200s), probed every 20 ms: when each port answered.
    final class Probe: Sendable {
        final class Answers: Sendable {
            let times = Mutex([Int: [ContinuousClock.Instant]]())
        }

        let answers = Answers()
        let task: Task<Void, Never>

        init(_ ports: [Int]) {
            let answers = answers
            task = Task {
                while !Task.isCancelled {
                    for port in ports {
                        if let reply = try? await ServeProcessTests.closingGet(port, "/v1/units"), reply.hasPrefix("HTTP/1.1 200") {
                            answers.times.withLock { $0[port, default: []].append(.now) }
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
        }

        func answered(_ port: Int) -> [ContinuousClock.Instant] { answers.times.withLock { $0[port] ?? [] } }
    }

    @Test func aLeaderCutOffFromTheDatabaseStepsDownBeforeItsLeaseRunsOutAndTheOtherTakesOver() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path), "build the fulcrum executable first")
        try await withTestDatabase { url in
            // a logs in as a role of its own, so the database can shut a out and no one else: its sessions are
            // ended and it may not log in again. Roles are the server's, so the name is unique to this run.
            let role = "fulcrum_cut_" + UUID().uuidString.prefix(8).lowercased()
            func admin(_ sql: String) async throws {
                try await withPostgresClient(url, maxConnections: 1, logger: TestDatabases.logger) { client in
                    try await client.query(PostgresQuery(unsafeSQL: sql))
                }
            }
            try await admin("CREATE ROLE \(role) LOGIN SUPERUSER")
            var urlA = url
            urlA.username = role
            let a = try Server(database: urlA, arguments: ["--replica-id", "a"] + Self.lease)
            let portA = try await a.port()
            let b = try Server(database: url, arguments: ["--replica-id", "b"] + Self.lease)
            let portB = try await b.listeningPort()
            #expect(try await waitUntil(within: .seconds(10)) {
                Self.json(try await ServeProcessTests.closingGet(portB, "/v1/cluster"))["leader"] as? String == "a"
            })
            // a's lease loop has seen b, so a knows it is not alone and must not outlive its lease.
            #expect(try await waitUntil(within: .seconds(10)) {
                Self.json(try await ServeProcessTests.closingGet(portA, "/v1/cluster"))["othersSeen"] as? Int == 1
            })
            let probe = Probe([portA, portB])
            defer { probe.task.cancel() }
            #expect(try await waitUntil(within: .seconds(5)) { !probe.answered(portA).isEmpty })

            try await admin("ALTER ROLE \(role) NOLOGIN")
            try await admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(role)'")
            let cut = ContinuousClock.now
            #expect(try await waitUntil(within: .seconds(10)) { try await ServeProcessTests.send("GET", portB, "/readyz").0 == 200 })
            try await Task.sleep(for: .milliseconds(300))
            probe.task.cancel()

            // a stopped answering before b started: never two leaders at once, and b led within 5 s of the cut.
            let lastA = try #require(probe.answered(portA).last)
            let firstB = try #require(probe.answered(portB).first)
            print("database cut: a's last answer \(Int((lastA - cut).seconds * 1_000)) ms after the cut, b's first \(Int((firstB - cut).seconds * 1_000)) ms (lease 1 s)")
            #expect(lastA < firstB)
            #expect(firstB - cut < .seconds(5))
            let refused = try await ServeProcessTests.closingGet(portA, "/v1/units")
            #expect(refused.hasPrefix("HTTP/1.1 503") && refused.contains(#""code":"not_leader""#), "\(refused)")
            #expect(try await ServeProcessTests.send("GET", portA, "/readyz").0 == 503)
            #expect(try await ServeProcessTests.send("GET", portA, "/healthz").0 == 200)

            // Let back in, a follows b.
            try await admin("ALTER ROLE \(role) LOGIN")
            #expect(try await waitUntil(within: .seconds(10)) {
                Self.json(try await ServeProcessTests.closingGet(portA, "/v1/cluster"))["leader"] as? String == "b"
            })
            a.process.terminate()
            b.process.terminate()
            #expect(try await a.waitForExit(within: .seconds(10)) == 0)
            #expect(try await b.waitForExit(within: .seconds(10)) == 0)
            try await admin("DROP ROLE \(role)")
        }
    }
}
