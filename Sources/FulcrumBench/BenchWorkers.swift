import FulcrumSimulator
import Foundation
import NIOCore
import NIOHTTP1

/// One worker's placement long poll: parks with its current version, records when a new one arrives, acks it.
struct Poller: Sendable {
    struct Receipt: Sendable {
        var unit: String
        var version: Int
        var at: ContinuousClock.Instant
    }

    let worker: BenchFleet.Worker
    let host: String
    let port: Int

    static func version(_ response: HTTPConnection.Response) -> Int? {
        response.headers.first(name: "ETag").flatMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) }
    }

    func run(ready: Counter, stop: StopSignal) async throws -> [Receipt] {
        var receipts: [Receipt] = []
        do {
            try await HTTPConnection.with(host: host, port: port) { connection in
                let first = try await connection.send(.GET, "/v1/workers/\(worker.id)/placement")
                try BenchFleet.expect(first, .ok, "placement of \(worker.id)")
                var version = Self.version(first) ?? 0
                ready.increment()
                while !stop.isSet {
                    let response = try await connection.send(
                        .GET, "/v1/workers/\(worker.id)/placement?wait=30", headers: [("If-None-Match", "\"\(version)\"")])
                    guard response.status == .ok, let newer = Self.version(response) else { continue }
                    receipts.append(Receipt(unit: worker.unit, version: newer, at: .now))
                    version = newer
                    let ack = try await connection.send(
                        .POST, "/v1/workers/\(worker.id)/placement/ack", body: ByteBuffer(string: #"{"version": \#(newer)}"#))
                    try BenchFleet.expect(ack, .ok, "ack of \(worker.id)")
                }
            }
        } catch where stop.isSet {
            // Stopped while parked: the connection was closed under the poll.
        }
        return receipts
    }
}

/// Sends the reports of its share of the workers over one connection, each worker at `rate` per second, spread
/// evenly over the fleet (worker i at i/N of each period). Latency is measured per request; lag is how late a
/// report went out against its schedule (a sender that falls behind hides latency otherwise).
struct TelemetrySender: Sendable {
    struct Result: Sendable {
        var latenciesMicros: [Int] = []
        var sent = 0
        var accepted = 0
        var notAccepted = 0
        var errors = 0
        var maxLag: Duration = .zero
        var started: ContinuousClock.Instant = .now
        var finished: ContinuousClock.Instant = .now
    }

    let workers: [BenchFleet.Worker]
    let total: Int
    let rate: Double
    let duration: Double
    let start: ContinuousClock.Instant

    func run(host: String, port: Int) async throws -> Result {
        let rounds = Int(duration * rate)
        let period = 1.0 / rate
        let clock = ContinuousClock()
        var result = Result()
        result.started = start
        result.latenciesMicros.reserveCapacity(rounds * workers.count)
        let sentAtStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        try await HTTPConnection.with(host: host, port: port) { connection in
            for round in 0..<rounds {
                let sentAt = Date().formatted(sentAtStyle)
                for worker in workers {
                    let offset = (Double(round) + Double(worker.index) / Double(total)) * period
                    let due = start + .microseconds(Int64(offset * 1e6))
                    if clock.now < due { try await clock.sleep(until: due) }
                    let body = ByteBuffer(string: Self.report(worker, seq: round + 1, sentAt: sentAt))
                    let began = clock.now
                    result.maxLag = max(result.maxLag, began - due)
                    let response = try await connection.send(.POST, "/v1/workers/\(worker.id)/telemetry", body: body)
                    let took = clock.now - began
                    result.latenciesMicros.append(Int(took.components.seconds * 1_000_000 + took.components.attoseconds / 1_000_000_000_000))
                    result.sent += 1
                    if response.status != .accepted {
                        result.errors += 1
                    } else if response.body.readableBytesView.starts(with: Array(#"{"accepted":true"#.utf8)) {
                        result.accepted += 1
                    } else {
                        result.notAccepted += 1
                    }
                }
            }
        }
        result.finished = clock.now
        return result
    }

    /// A realistic report: the load section of its role every time, expert slot counts once a second.
    static func report(_ worker: BenchFleet.Worker, seq: Int, sentAt: String) -> String {
        let load =
            worker.role == "decode"
            ? #""decode": {"kvTokensUsed": \#(100_000 + (seq * 37 + worker.index) % 50_000), "kvTokensCapacity": 600000, "runningRequests": \#(20 + seq % 7)}"#
            : #""prefill": {"queuedTokens": \#(seq * 13 % 40_000), "queuedRequests": \#(seq % 9), "attentionWork": \#(seq * 1_000 + worker.index)}"#
        var experts = ""
        if seq % 10 == 0 {
            let row = "[" + (0..<worker.slotsPerGpu).map { String(($0 * 31 + seq) % 5_000) }.joined(separator: ",") + "]"
            let rows = Array(repeating: row, count: BenchFleet.moeLayers).joined(separator: ",")
            experts = #", "experts": {"windowStart": "\#(sentAt)", "windowEnd": "\#(sentAt)", "slotTokens": [\#(rows)]}"#
        }
        return #"{"seq": \#(seq), "sentAt": "\#(sentAt)", \#(load)\#(experts)}"#
    }
}
