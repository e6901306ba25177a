import FulcrumSimulator
import FulcrumCore
import Foundation
import NIOCore
import NIOHTTP1

/// `fulcrum bench assign`: gateways' assignment calls against a running Fulcrum. Registers DeepSeek's peak fleet,
/// has every worker report once (so every rank may take work), then sends prefill and decode batches over many
/// connections for a while, each followed by the finish of its previous batch (a gateway's steady state), and
/// reports assignments per second and batch latency.
public struct AssignBenchmark: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The Fulcrum process, to report its CPU time and memory.
    public var serverPID: Int32?
    /// Workers to register; DeepSeek's peak was 278 nodes x 8 GPUs.
    public var workers = 2_224
    /// Requests per batch.
    public var batch = 256
    /// Connections sending batches (half prefill, half decode).
    public var connections = 16
    /// Seconds of load.
    public var duration = 20.0

    public init() {}

    var serverFigures: ProcessFigures? { serverPID.flatMap(ProcessFigures.init(pid:)) }

    struct LaneResult: Sendable {
        var prefill: Bool
        var latencies: [Double] = []
        var assigned = 0
        var refused = 0
        var failures = 0
    }

    /// Runs the load and prints its figures; false when a batch failed.
    public func run() async throws -> Bool {
        let (host, port) = (self.host, self.port)
        let fleet = BenchFleet(workers: workers, tag: String(UUID().uuidString.prefix(6)).lowercased())
        print("registering \(fleet.workers.count) workers in \(fleet.units.count) units …")
        try await fleet.register(host: host, port: port, connections: 64)
        try await Self.heartbeat(fleet, seq: 1, host: host, port: port)
        print("\(connections) connections, batches of \(batch), for \(duration) s …")

        let before = serverFigures
        let clock = ContinuousClock()
        let started = clock.now
        let end = started + .seconds(duration)
        let (batch, tag) = (self.batch, String(UUID().uuidString.prefix(4)).lowercased())
        let lanes = try await withThrowingTaskGroup(of: LaneResult?.self) { group in
            // Every worker keeps reporting (every 2 s), or the liveness timeout would take it out of service.
            group.addTask {
                var seq = 1
                while clock.now < end {
                    try await Task.sleep(for: .seconds(2))
                    seq += 1
                    try await Self.heartbeat(fleet, seq: seq, host: host, port: port)
                }
                return nil
            }
            for lane in 0..<connections {
                group.addTask {
                    try await HTTPConnection.with(host: host, port: port) { connection in
                        try await Self.lane(
                            lane, prefill: lane % 2 == 0, batch: batch, tag: tag, until: end, connection: &connection)
                    }
                }
            }
            var results: [LaneResult] = []
            for try await result in group { if let result { results.append(result) } }
            return results
        }
        let elapsed = (clock.now - started)
        let seconds = elapsed.seconds
        let after = serverFigures
        for prefill in [true, false] {
            let mine = lanes.filter { $0.prefill == prefill }
            let latencies = mine.flatMap(\.latencies).sorted()
            func at(_ q: Double) -> Double { latencies.isEmpty ? 0 : percentile(latencies, q) * 1e3 }
            let assigned = mine.reduce(0) { $0 + $1.assigned }
            print(
                String(
                    format: "%@: %.0f assignments/s in %d batches; batch latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; refused %d, HTTP failures %d",
                    (prefill ? "prefill" : "decode ") as NSString, Double(assigned) / seconds, latencies.count,
                    at(0.5), at(0.99), (latencies.last ?? 0) * 1e3, mine.reduce(0) { $0 + $1.refused },
                    mine.reduce(0) { $0 + $1.failures }))
        }
        let total = lanes.reduce(0) { $0 + $1.assigned }
        print(String(format: "total: %.0f assignments/s over %.1f s", Double(total) / seconds, seconds))
        if let before, let after {
            print(
                String(
                    format: "fulcrum serve: %.2f cores, %.0f MiB resident", (after.cpuSeconds - before.cpuSeconds) / seconds,
                    after.rssMiB))
        }
        return !lanes.contains(where: { $0.failures > 0 })
    }

    /// One empty-queue report from every worker.
    static func heartbeat(_ fleet: BenchFleet, seq: Int, host: String, port: Int) async throws {
        let sentAt = ISO8601DateFormatter().string(from: Date())
        try await fleet.forEach(fleet.workers, host: host, port: port, connections: 8) { worker, connection in
            let load =
                worker.role == "prefill"
                ? #""prefill": {"queuedTokens": 0, "queuedRequests": 0, "attentionWork": 0}"#
                : #""decode": {"kvTokensUsed": 0, "kvTokensCapacity": 600000, "runningRequests": 0}"#
            let body = ByteBuffer(string: #"{"seq": \#(seq), "sentAt": "\#(sentAt)", \#(load)}"#)
            try BenchFleet.expect(
                try await connection.send(.POST, "/v1/workers/\(worker.id)/telemetry", body: body), .accepted,
                "telemetry from \(worker.id)")
        }
    }

    /// One gateway connection: a batch, then the finish of its previous batch, until `end`.
    static func lane(
        _ lane: Int, prefill: Bool, batch: Int, tag: String, until end: ContinuousClock.Instant,
        connection: inout HTTPConnection
    ) async throws -> LaneResult {
        var result = LaneResult(prefill: prefill)
        var random = SystemRandomNumberGenerator()
        var previous: [String] = []
        var serial = 0
        let clock = ContinuousClock()
        while clock.now < end {
            var ids: [String] = []
            var items: [String] = []
            for _ in 0..<batch {
                serial += 1
                let id = "\(tag)-\(lane)-\(serial)"
                ids.append(id)
                if prefill {
                    let input = Int.random(in: 500...16_000, using: &random)
                    let cached = Bool.random(using: &random) ? Int.random(in: 0..<input, using: &random) : 0
                    items.append(#"{"id":"\#(id)","inputTokens":\#(input),"cachedTokens":\#(cached)}"#)
                } else {
                    items.append(#"{"id":"\#(id)","contextTokens":\#(Int.random(in: 500...8_000, using: &random))}"#)
                }
            }
            let body = ByteBuffer(string: #"{"requests":[\#(items.joined(separator: ","))]}"#)
            let sent = clock.now
            let response = try await connection.send(.POST, prefill ? "/v1/prefill/assignments" : "/v1/decode/assignments", body: body)
            let took = clock.now - sent
            result.latencies.append(took.seconds)
            guard response.status == .ok,
                let answer = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            else {
                if result.failures == 0 { print("HTTP \(response.status.code): \(String(buffer: response.body).prefix(300))") }
                result.failures += 1
                continue
            }
            result.assigned += (answer["assignments"] as? [Any])?.count ?? 0
            result.refused += (answer["errors"] as? [Any])?.count ?? 0
            if !previous.isEmpty {
                let finished = ByteBuffer(string: #"{"ids":[\#(previous.map { "\"\($0)\"" }.joined(separator: ","))]}"#)
                let done = try await connection.send(.POST, "/v1/requests/finished", body: finished)
                if done.status != .ok { result.failures += 1 }
            }
            previous = ids
        }
        return result
    }
}
