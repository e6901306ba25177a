import FulcrumSimulator
import Foundation
import NIOCore
import NIOHTTP1

/// The simulated fleet: DeepSeek's mix of decode units (18 nodes x 8 GPUs) and prefill units (4 x 8), about 58%
/// of the GPUs decoding, as in its published day.
struct BenchFleet: Sendable {
    struct Unit: Sendable {
        var id: String
        var role: String
        var nodes: Int
        var slotsPerGpu: Int { 288 / (nodes * 8) }
    }

    struct Worker: Sendable {
        var id: String
        var unit: String
        var role: String
        var node: Int
        var gpu: Int
        var index: Int
        var slotsPerGpu: Int
    }

    static let moeLayers = 58

    let units: [Unit]
    let workers: [Worker]

    init(workers count: Int, tag: String) {
        let decodeUnits = Int((Double(count) * 0.58 / 144).rounded())
        var units: [Unit] = (0..<decodeUnits).map { Unit(id: "bench-\(tag)-d\($0)", role: "decode", nodes: 18) }
        var remaining = max(0, count - decodeUnits * 144)
        var prefill = 0
        while remaining > 0 {
            units.append(Unit(id: "bench-\(tag)-p\(prefill)", role: "prefill", nodes: 4))
            prefill += 1
            remaining -= 32
        }
        var workers: [Worker] = []
        for unit in units {
            for rank in 0..<(unit.nodes * 8) where workers.count < count {
                workers.append(
                    Worker(
                        id: "\(unit.id)-r\(rank)", unit: unit.id, role: unit.role, node: rank / 8, gpu: rank % 8,
                        index: workers.count, slotsPerGpu: unit.slotsPerGpu))
            }
        }
        self.units = units
        self.workers = workers
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func expect(_ response: HTTPConnection.Response, _ status: HTTPResponseStatus, _ what: String) throws {
        guard response.status == status else {
            throw Failure(description: "\(what): HTTP \(response.status.code) \(String(buffer: response.body))")
        }
    }

    func register(host: String, port: Int, connections: Int) async throws {
        try await HTTPConnection.with(host: host, port: port) { connection in
            for unit in units {
                let body = """
                    {"id": "\(unit.id)", "role": "\(unit.role)", "nodes": \(unit.nodes), "gpusPerNode": 8,
                     "model": {"moeLayers": 58, "routedExperts": 256, "expertGroups": 8}, "redundantExperts": 32}
                    """
                try Self.expect(
                    try await connection.send(.POST, "/v1/units", body: ByteBuffer(string: body)), .created,
                    "create \(unit.id)")
            }
        }
        try await forEach(workers, host: host, port: port, connections: connections) { worker, connection in
            let body = """
                {"unit": "\(worker.unit)", "node": \(worker.node), "gpu": \(worker.gpu),
                 "capacity": {"kvTokens": 600000, "maxBatchTokens": 16384}}
                """
            try Self.expect(
                try await connection.send(.PUT, "/v1/workers/\(worker.id)", body: ByteBuffer(string: body)), .created,
                "register \(worker.id)")
        }
    }

    /// Publishes a placement that moves every expert one slot along, for every unit at once; returns when each
    /// publish request was sent.
    func publishAll(host: String, port: Int) async throws -> [String: (sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)] {
        let row = (0..<288).map { String(($0 + 1) % 256) }.joined(separator: ",")
        let table = "[" + Array(repeating: "[\(row)]", count: Self.moeLayers).joined(separator: ",") + "]"
        let body = ByteBuffer(string: #"{"phy2log": \#(table)}"#)
        return try await withThrowingTaskGroup(of: (String, (ContinuousClock.Instant, ContinuousClock.Instant)).self) { group in
            for unit in units {
                group.addTask {
                    try await HTTPConnection.with(host: host, port: port) { connection in
                        let sent = ContinuousClock.now
                        try Self.expect(
                            try await connection.send(.POST, "/v1/units/\(unit.id)/placements", body: body), .created,
                            "publish \(unit.id)")
                        return (unit.id, (sent, ContinuousClock.now))
                    }
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
    }

    struct Check: Codable, Sendable {
        var lastSeq: [String: Int] = [:]
        var duplicates = 0
        var ackedNewest = 0
        var liveUnits = 0
    }

    /// Reads back what Fulcrum applied: every worker's last seq and duplicate count, and whether every unit's
    /// newest placement is live (acknowledged by all its ranks).
    func verify(host: String, port: Int) async throws -> Check {
        let perWorker = try await map(workers, host: host, port: port, connections: 32) { worker, connection in
            let response = try await connection.send(.GET, "/v1/workers/\(worker.id)")
            try Self.expect(response, .ok, "read \(worker.id)")
            let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            let telemetry = json?["telemetry"] as? [String: Any]
            return (
                worker.id, telemetry?["lastSeq"] as? Int ?? -1, telemetry?["duplicates"] as? Int ?? 0,
                json?["ackedVersion"] as? Int ?? 0
            )
        }
        var check = Check()
        for (id, lastSeq, duplicates, acked) in perWorker {
            check.lastSeq[id] = lastSeq
            check.duplicates += duplicates
            if acked == 2 { check.ackedNewest += 1 }
        }
        let live = try await map(units, host: host, port: port, connections: 8) { unit, connection in
            let response = try await connection.send(.GET, "/v1/units/\(unit.id)/placement/status")
            let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
            return (json?["current"] as? [String: Any])?["live"] as? Bool == true
        }
        check.liveUnits = live.filter { $0 }.count
        return check
    }

    func forEach<Item: Sendable>(
        _ items: [Item], host: String, port: Int, connections: Int,
        _ body: @escaping @Sendable (Item, inout HTTPConnection) async throws -> Void
    ) async throws {
        _ = try await map(items, host: host, port: port, connections: connections) { item, connection in
            try await body(item, &connection)
        }
    }

    private func map<Item: Sendable, Value: Sendable>(
        _ items: [Item], host: String, port: Int, connections: Int,
        _ body: @escaping @Sendable (Item, inout HTTPConnection) async throws -> Value
    ) async throws -> [Value] {
        try await withThrowingTaskGroup(of: [Value].self) { group in
            for lane in 0..<min(connections, items.count) {
                group.addTask {
                    try await HTTPConnection.with(host: host, port: port) { connection in
                        var values: [Value] = []
                        for index in stride(from: lane, to: items.count, by: connections) {
                            values.append(try await body(items[index], &connection))
                        }
                        return values
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }
}
