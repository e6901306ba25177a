import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
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
}
