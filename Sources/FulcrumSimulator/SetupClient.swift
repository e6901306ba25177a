import Foundation
import FulcrumCore
import NIOCore
import NIOHTTP1

/// The simulation's admin side: registers the cluster before the run, watches killed workers during it, and reads
/// back afterwards what Fulcrum recorded.
struct SetupClient: Sendable {
    let endpoints: Endpoints
    let token: String?

    private func expect(_ response: HTTPConnection.Response, _ statuses: [HTTPResponseStatus], _ what: String) throws {
        guard statuses.contains(response.status) else {
            throw Simulation.SetupError(
                description: "\(what): HTTP \(response.status.code) \(String(buffer: response.body).prefix(300))")
        }
    }

    /// Creates the units (an existing one of the same id is reused), sets their policy, registers every worker.
    func register(_ shape: ClusterShape, policy: String?) async throws {
        // Each call may be repeated on another replica during a failover: creating a unit that exists is a 409,
        // registering a worker twice an update.
        try await HTTPConnection.onLeader(endpoints, token: token) { connection in
            for unit in shape.units {
                let body = """
                    {"id": "\(unit.id)", "role": "\(unit.role.rawValue)", "nodes": \(unit.nodes), "gpusPerNode": \(unit.gpusPerNode),
                     "model": {"moeLayers": \(ClusterShape.moeLayers), "routedExperts": \(ClusterShape.routedExperts), "expertGroups": \(ClusterShape.expertGroups)},
                     "redundantExperts": \(ClusterShape.slots - ClusterShape.routedExperts)}
                    """
                let created = try await connection.send(.POST, "/v1/units", body: ByteBuffer(string: body))
                try expect(created, [.created, .conflict], "create unit \(unit.id)")
                if let policy {
                    try expect(
                        try await connection.send(.PUT, "/v1/units/\(unit.id)/policy", body: ByteBuffer(string: policy)),
                        [.ok], "policy of \(unit.id)")
                }
            }
        }
        let lanes = 32
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    try await HTTPConnection.onLeader(endpoints, token: token) { connection in
                        for index in stride(from: lane, to: shape.workers.count, by: lanes) {
                            let worker = shape.workers[index]
                            let body = """
                                {"unit": "\(worker.unit.id)", "node": \(worker.node), "gpu": \(worker.gpu),
                                 "capacity": {"kvTokens": \(ClusterShape.kvTokens), "maxBatchTokens": \(ClusterShape.maxBatchTokens)}}
                                """
                            try expect(
                                try await connection.send(.PUT, "/v1/workers/\(worker.id)", body: ByteBuffer(string: body)),
                                [.created, .ok], "register \(worker.id)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Polls a killed worker's state until Fulcrum marks it dead. A worker Fulcrum already held dead when it was
    /// killed (its reports had stalled, and no sweep had revived it yet) is reported as such, without a silence:
    /// that death was not this failure's detection.
    func watchDeath(
        of worker: String, control: WorkerControl, gateway: Gateway, run: RunState, context: SimulationContext
    ) async {
        let deadline = ContinuousClock.now + .seconds(300)
        var seenAlive = false
        while !Task.isCancelled, ContinuousClock.now < deadline {
            guard let state = try? await workerState(worker) else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            if state != "dead" {
                seenAlive = true
            } else {
                gateway.detected(worker)
                run.detected(worker, at: context.elapsed, lastReportAt: seenAlive ? control.lastAnsweredAt : nil)
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    private struct WorkerView: Decodable { var state: String }

    func workerState(_ worker: String) async throws -> String? {
        try await HTTPConnection.onLeader(endpoints, token: token, patience: .seconds(2)) { connection in
            let response = try await connection.send(.GET, "/v1/workers/\(worker)")
            guard response.status == .ok else { return nil }
            return try JSONDecoder().decode(WorkerView.self, from: Data(response.body.readableBytesView)).state
        }
    }

    struct Verification: Sendable {
        struct UnitStatus: Sendable {
            var version: Int
            var live: Bool
            var liveRanks: Int
            var acked: Int
        }

        var units: [String: UnitStatus] = [:]
        var ledgerChecked = 0
        var ledgerComplete = 0
        var incomplete: [String] = []
        var workerStates: [String: String] = [:]
        var problems: [String] = []
    }

    private struct Status: Decodable {
        struct Current: Decodable {
            var version: Int
            var live: Bool
            var liveRanks: Int
            var acked: Int
        }

        var current: Current
    }

    private struct RequestView: Decodable {
        struct Assignment: Decodable {
            var phase: String
            var finishedAt: String?
        }

        var assignments: [Assignment]
    }

    /// Each unit's placement status, read while the workers still run: a version published in the run's last
    /// moments gets up to `wait` seconds to reach every live worker (read after the workers stop, it never could).
    func settledPlacements(_ shape: ClusterShape, wait: Double) async -> (units: [String: Verification.UnitStatus], problems: [String]) {
        var units: [String: Verification.UnitStatus] = [:]
        var problems: [String] = []
        do {
            try await HTTPConnection.onLeader(endpoints, token: token) { connection in
                let deadline = ContinuousClock.now + .seconds(wait)
                (units, problems) = ([:], [])
                for unit in shape.units {
                    while true {
                        let response = try await connection.send(.GET, "/v1/units/\(unit.id)/placement/status")
                        guard response.status == .ok else {
                            problems.append("placement status of \(unit.id): HTTP \(response.status.code)")
                            break
                        }
                        let status = try JSONDecoder().decode(Status.self, from: Data(response.body.readableBytesView))
                        units[unit.id] = .init(
                            version: status.current.version, live: status.current.live,
                            liveRanks: status.current.liveRanks, acked: status.current.acked)
                        if status.current.live || ContinuousClock.now > deadline { break }
                        try await Task.sleep(for: .milliseconds(250))
                    }
                }
            }
        } catch {
            problems.append("reading placement status from Fulcrum: \(error)")
        }
        return (units, problems)
    }

    /// What Fulcrum says after the run: the placements as `settledPlacements` read them, the ledger of a sample of
    /// finished requests (both phases assigned and finished), and the state of each worker a failure struck.
    func verify(
        _ shape: ClusterShape, placements: (units: [String: Verification.UnitStatus], problems: [String]), finishedSample: [String],
        failures: [RunState.Struck]
    ) async -> Verification {
        var verification = Verification()
        verification.units = placements.units
        verification.problems = placements.problems
        do {
            try await HTTPConnection.onLeader(endpoints, token: token) { connection in
                // From the start again if a failover cuts it short.
                (verification.ledgerChecked, verification.ledgerComplete, verification.incomplete) = (0, 0, [])
                for id in finishedSample {
                    let response = try await connection.send(.GET, "/v1/requests/\(id)")
                    verification.ledgerChecked += 1
                    guard response.status == .ok,
                        let view = try? JSONDecoder().decode(RequestView.self, from: Data(response.body.readableBytesView))
                    else {
                        verification.incomplete.append("\(id) (HTTP \(response.status.code))")
                        continue
                    }
                    let finished = Set(view.assignments.filter { $0.finishedAt != nil }.map(\.phase))
                    if finished == ["prefill", "decode"] {
                        verification.ledgerComplete += 1
                    } else {
                        verification.incomplete.append(id)
                    }
                }
            }
            for struck in failures {
                verification.workerStates[struck.worker] = try await workerState(struck.worker)
            }
        } catch {
            verification.problems.append("reading back from Fulcrum: \(error)")
        }
        return verification
    }
}
