import FulcrumStore
import FulcrumTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PostgresNIO
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The real `fulcrum serve` on a real PostgreSQL of the test's own that the test stops and starts, and killed with
/// SIGKILL mid-burst: what survives what (README, "Reliability").
@Suite(
    "Reliability: database outages and kill -9",
    .enabled(
        if: TestDatabases.serverURL != nil && (PrivatePostgres.available || TestDatabases.required),
        "needs PostgreSQL's binaries and DATABASE_URL, which scripts/test provides"),
    .serialized)
struct OutageTests {
    typealias Server = ServeProcessTests.Server

    static func call(
        _ method: String, _ port: Int, _ path: String, body: String? = nil, token: String = TestTokens.admin
    ) async throws -> (status: Int, json: [String: Any]) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 20
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.httpBody = body.map { Data($0.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, json)
    }

    /// Writes the server answered as done.
    final class Acknowledged: Sendable {
        private let items = Mutex<[String]>([])
        func add(_ item: String) { items.withLock { $0.append(item) } }
        var all: [String] { items.withLock { $0 } }
    }

    static func errorCode(_ json: [String: Any]) -> String? { (json["error"] as? [String: Any])?["code"] as? String }

    static func writer(_ port: Int) async throws -> [String: Any] {
        try await call("GET", port, "/v1/metrics").json["writer"] as? [String: Any] ?? [:]
    }

    /// Polled every 200 ms: each look is an HTTP call to the server under test.
    static func eventually(within limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        try await waitUntil(within: limit, every: .milliseconds(200), condition)
    }

    /// Issue 16, item 5: with the database down at start-up the process answers `/healthz`, `/readyz` says why it
    /// is not ready and `/v1` answers 503 `starting`; once the database is up it starts by itself.
    @Test func startsWhileTheDatabaseIsDownAndServesOnceItComesUp() async throws {
        let database = try await offPool { try PrivatePostgres() }
        try await offPool { try database.stop() }
        let server = try Server(database: database.url)
        let port = try await server.listeningPort()
        #expect(try await Self.call("GET", port, "/healthz").status == 200)
        var reason = ""
        let named = try await Self.eventually(within: .seconds(10)) {
            let ready = try await Self.call("GET", port, "/readyz")
            #expect(ready.status == 503)
            #expect(Self.errorCode(ready.json) == "not_ready")
            reason = (ready.json["error"] as? [String: Any])?["message"] as? String ?? ""
            return reason.contains("the database is unavailable")
        }
        #expect(named, "\(reason)")
        let early = try await Self.call("POST", port, "/v1/units", body: unitJSON())
        #expect(early.status == 503)
        #expect(Self.errorCode(early.json) == "starting")

        try await offPool { try database.start() }
        #expect(try await Self.eventually(within: .seconds(20)) { try await Self.call("GET", port, "/readyz").status == 200 })
        #expect(try await Self.call("POST", port, "/v1/units", body: unitJSON()).status == 201)
        server.process.terminate()
        #expect(try await server.waitForExit(within: .seconds(10)) == 0)
        #expect(server.log.contains("started after waiting for the database"))
        withExtendedLifetime(database) {}
    }

    /// The hot path is served from memory through an outage; admin writes are refused on time and land nowhere;
    /// `/readyz` and the writer's metrics show the outage at once; the writer resumes by itself and what it
    /// buffered reaches the database.
    @Test func anOutageKeepsTheHotPathServingAndLosesNothingBuffered() async throws {
        let database = try await offPool { try PrivatePostgres() }
        // Workers go about 7 s without reporting while the refused write runs out its 5 s: a long worker timeout
        // keeps a loaded machine from declaring them dead meanwhile.
        let server = try Server(
            database: database.url, arguments: ["--telemetry-sample-interval", "100ms", "--worker-timeout", "60s"])
        let port = try await server.port()
        #expect(try await Self.call("POST", port, "/v1/units", body: unitJSON(id: "decode-0", role: "decode", nodes: 1)).status == 201)
        let workers = (0..<8).map { "decode-0-n0-g\($0)" }
        for (gpu, worker) in workers.enumerated() {
            #expect(try await Self.call("PUT", port, "/v1/workers/\(worker)", body: workerJSON(unit: "decode-0", gpu: gpu)).status == 201)
        }
        let seq = Mutex(0)
        func reportAll() async throws -> [String] {
            let next = seq.withLock { $0 += 1; return $0 }
            var statuses: [String] = []
            for worker in workers {
                let body = """
                    {"seq": \(next), "sentAt": "\(Date().ISO8601Format())", "decode": {"kvTokensUsed": \(1_000 * next), "kvTokensCapacity": 400000, "runningRequests": 2}}
                    """
                let answer = try await Self.call("POST", port, "/v1/workers/\(worker)/telemetry", body: body, token: TestTokens.worker)
                if answer.status != 202 { statuses.append("\(answer.status) \(answer.json)") }
            }
            return statuses
        }
        var assigned: [String] = []
        func assign(_ id: String) async throws -> String {
            let body = #"{"requests": [{"id": "\#(id)", "contextTokens": 2000}], "allowHold": false}"#
            let answer = try await Self.call("POST", port, "/v1/decode/assignments", body: body, token: TestTokens.gateway)
            guard answer.status == 200 else { return "\(answer.status) \(answer.json)" }
            assigned.append(id)
            return "200"
        }
        let reports = try await reportAll()
        #expect(reports == [])
        let first = try await assign("before-outage")
        #expect(first == "200")

        try await offPool { try database.stop() }
        let outageStarted = ContinuousClock.now
        // Admin writes: refused within the store deadline (5 s) with 503 store_unavailable.
        let refused = try await Self.call("POST", port, "/v1/units", body: unitJSON(id: "during-outage", role: "decode", nodes: 1))
        #expect(refused.status == 503)
        #expect(Self.errorCode(refused.json) == "store_unavailable")
        let refusedAfter = ContinuousClock.now - outageStarted
        #expect(refusedAfter < .seconds(8))
        #expect(try await Self.call("GET", port, "/readyz").status == 503)
        // The hot path answers throughout, from memory.
        for round in 0..<10 {
            let reports = try await reportAll()
            #expect(reports == [], "telemetry during the outage")
            let assignment = try await assign("during-outage-\(round)")
            #expect(assignment == "200", "an assignment during the outage")
            // Real time: the outage is a real PostgreSQL stopped; the rounds spread over the writer's 2 s watchdog.
            try await Task.sleep(for: .milliseconds(300))
        }
        let during = try await Self.writer(port)
        #expect((during["consecutiveFailures"] as? Int ?? 0) >= 1, "\(during)")
        #expect(during["lastError"] as? String != nil, "\(during)")
        #expect((during["oldestUnwrittenSeconds"] as? Double ?? 0) > 0, "\(during)")
        #expect((during["bufferedRows"] as? Int ?? 0) + (during["ledgerBufferedRows"] as? Int ?? 0) > 0, "\(during)")

        try await offPool { try database.start() }
        let restarted = ContinuousClock.now
        let drained = try await Self.eventually(within: .seconds(30)) {
            let writer = try await Self.writer(port)
            return writer["bufferedRows"] as? Int == 0 && writer["ledgerBufferedRows"] as? Int == 0
                && writer["consecutiveFailures"] as? Int == 0
        }
        let after = try await Self.writer(port)
        #expect(drained, "the writer resumed by itself: \(after)")
        #expect(after["droppedSamples"] as? Int == 0 && after["droppedLedgerRows"] as? Int == 0, "\(after)")
        #expect(try await Self.eventually(within: .seconds(10)) { try await Self.call("GET", port, "/readyz").status == 200 })
        #expect(try await Self.call("GET", port, "/v1/units/during-outage").status == 404, "a refused write landed")

        // Every assignment acknowledged during the outage is in the ledger.
        let recorded = try await withPostgresClient(database.url, logger: TestDatabases.logger) { client in
            var ids: Set<String> = []
            for try await id in try await client.query("SELECT request_id FROM assignments").decode(String.self) {
                ids.insert(id)
            }
            return ids
        }
        #expect(Set(assigned).isSubset(of: recorded), "missing: \(Set(assigned).subtracting(recorded).sorted())")
        #expect(assigned.count == 11)
        print(
            "outage: admin write refused after \(refusedAfter.formatted(.units(allowed: [.milliseconds]))); "
                + "during it \(10 * workers.count) reports accepted, \(assigned.count - 1) assignments answered, "
                + "writer failing at \(during["consecutiveFailures"] ?? "?") in a row; "
                + "written \((ContinuousClock.now - restarted).formatted(.units(allowed: [.milliseconds]))) after PostgreSQL was back "
                + "(\(after["writtenRows"] ?? "?") rows, \(after["droppedSamples"] ?? "?") dropped)")
        server.process.terminate()
        #expect(try await server.waitForExit(within: .seconds(10)) == 0)
        withExtendedLifetime(database) {}
    }

    /// kill -9 in the middle of a burst of registrations and cordons: every write that was acknowledged is there
    /// after a restart, its audit entry with it.
    @Test func everyAcknowledgedWriteSurvivesKillDashNine() async throws {
        try await withTestDatabase(migrated: false) { url in
            let first = try Server(database: url)
            let port = try await first.port()
            let units = (0..<4).map { "burst-\($0)" }
            for unit in units {
                #expect(try await Self.call("POST", port, "/v1/units", body: unitJSON(id: unit, nodes: 1)).status == 201)
            }
            let registered = Acknowledged()
            let cordoned = Acknowledged()
            let createdUnits = Acknowledged()
            let burst = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (index, unit) in units.enumerated() {
                        group.addTask {
                            for gpu in 0..<8 {
                                let worker = "\(unit)-g\(gpu)"
                                guard let put = try? await Self.call("PUT", port, "/v1/workers/\(worker)", body: workerJSON(unit: unit, gpu: gpu)),
                                    put.status == 201 || put.status == 200
                                else { return }
                                registered.add(worker)
                                guard let cordon = try? await Self.call(
                                    "POST", port, "/v1/workers/\(worker)/cordon", body: #"{"reason": "burst \#(gpu)"}"#),
                                    cordon.status == 200
                                else { return }
                                cordoned.add(worker)
                            }
                        }
                        group.addTask {
                            for extra in 0..<20 {
                                let id = "extra-\(index)-\(extra)"
                                guard let created = try? await Self.call("POST", port, "/v1/units", body: unitJSON(id: id, nodes: 1)),
                                    created.status == 201
                                else { return }
                                createdUnits.add(id)
                            }
                        }
                    }
                }
            }
            // Kill once some writes have landed and others are in flight.
            _ = try await Self.eventually(within: .seconds(10)) { cordoned.all.count >= 6 }
            kill(first.process.processIdentifier, SIGKILL)
            _ = await burst.value
            _ = try await first.waitForExit(within: .seconds(10))
            let (workers, cordons, created) = (registered.all, cordoned.all, createdUnits.all)
            #expect(!workers.isEmpty && !cordons.isEmpty && !created.isEmpty)

            print("kill -9: acknowledged before the kill: \(workers.count) registrations, \(cordons.count) cordons, \(created.count) units")
            let second = try Server(database: url)
            let secondPort = try await second.port()
            for worker in workers {
                let shown = try await Self.call("GET", secondPort, "/v1/workers/\(worker)")
                #expect(shown.status == 200, "an acknowledged registration of \(worker) was lost")
                if cordons.contains(worker) {
                    #expect(shown.json["state"] as? String == "cordoned", "an acknowledged cordon of \(worker) was lost")
                    let audit = try await Self.call("GET", secondPort, "/v1/audit?target=worker/\(worker)&action=worker.cordon")
                    #expect((audit.json["entries"] as? [Any])?.count == 1, "the cordon of \(worker) lost its audit entry")
                }
            }
            for unit in created {
                #expect(try await Self.call("GET", secondPort, "/v1/units/\(unit)").status == 200, "unit \(unit) was lost")
            }
            second.process.terminate()
            #expect(try await second.waitForExit(within: .seconds(10)) == 0)
        }
    }
}
