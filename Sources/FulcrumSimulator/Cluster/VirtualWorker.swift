import DequeModule
import Foundation
import FulcrumCore
import NIOCore
import NIOHTTP1
import Synchronization

/// What the failure scenarios do to a worker while it runs.
final class WorkerControl: Sendable {
    private struct State {
        var killed = false
        var telemetryDelay = 0.0
        var lastAnsweredAt: Double?
    }

    private let state = Mutex(State())

    var killed: Bool { state.withLock { $0.killed } }
    func kill() { state.withLock { $0.killed = true } }

    /// When (seconds into the run) Fulcrum last accepted one of its reports: the silence its liveness timeout
    /// counts starts here, not at the kill (a report can be answered late, or the loop can stall before it).
    var lastAnsweredAt: Double? { state.withLock { $0.lastAnsweredAt } }
    func answered(at seconds: Double) { state.withLock { $0.lastAnsweredAt = seconds } }

    /// Seconds by which its reports arrive late.
    var telemetryDelay: Double {
        get { state.withLock { $0.telemetryDelay } }
        set { state.withLock { $0.telemetryDelay = newValue } }
    }
}

/// One GPU worker, doing what a real one does over the worker protocol: reports its engine's load every interval
/// (with the requests it finished, and its expert slots' token counts about once a second), and keeps a placement
/// long poll open, applying and acknowledging every new version.
struct VirtualWorker: Sendable {
    let worker: ClusterShape.Worker
    let engine: UnitEngine
    let control: WorkerControl
    let context: SimulationContext

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await reportLoop() }
            group.addTask { await placementLoop() }
            // Either loop ends when the worker is killed or the run stops: the other goes with it.
            await group.next()
            group.cancelAll()
        }
    }

    private func reportLoop() async {
        let clock = ContinuousClock()
        let interval = context.telemetryInterval
        let expertsEvery = max(1, Int((1 / interval).rounded()))
        let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var windowStart = Date()
        var pending: Deque<(due: ContinuousClock.Instant, body: String)> = []
        // Spread the fleet's reports evenly over the interval.
        var next = clock.now + .seconds(interval * Double(worker.rank % 97) / 97)
        var seq = 0
        while !Task.isCancelled, !control.killed {
            do {
                try await HTTPConnection.with(endpoints: context.endpoints, token: context.token) { connection in
                    while !Task.isCancelled, !control.killed {
                        try await clock.sleep(until: next)
                        next += .seconds(interval)
                        guard !control.killed else { return }
                        seq += 1
                        let now = Date()
                        let (load, finished, admitted) = engine.reportSection(rank: worker.rank)
                        var body = #"{"seq": \#(seq), "sentAt": "\#(now.formatted(dateStyle))", \#(load)"#
                        if !finished.isEmpty {
                            body += #", "finished": [\#(finished.map { "\"\($0)\"" }.joined(separator: ","))]"#
                        }
                        // Always present (an empty list too): it tells Fulcrum this worker reports admissions.
                        body += #", "admitted": [\#(admitted.map { "\"\($0)\"" }.joined(separator: ","))]"#
                        if seq % expertsEvery == 0 {
                            let counts = engine.experts.takeSlotTokens(rank: worker.rank)
                            let rows = counts.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }
                                .joined(separator: ",")
                            body += #", "experts": {"windowStart": "\#(windowStart.formatted(dateStyle))", "windowEnd": "\#(now.formatted(dateStyle))", "slotTokens": [\#(rows)]}"#
                            windowStart = now
                        }
                        body += "}"
                        pending.append((clock.now + .seconds(control.telemetryDelay), body))
                        while let first = pending.first, first.due <= clock.now {
                            do {
                                try await send(report: first.body, on: &connection)
                            } catch {
                                // A standby did not take it: the leader it named gets it next. Anything else may
                                // have been taken, so it is not sent twice.
                                if !(error is HTTPConnection.NotLeader) { pending.removeFirst() }
                                throw error
                            }
                            pending.removeFirst()
                        }
                    }
                }
            } catch {
                if Task.isCancelled || control.killed { return }
                if error is HTTPConnection.NotLeader {
                    context.recorder.count { $0.leaderChanges += 1 }
                    continue
                }
                context.recorder.error("telemetry of \(worker.id): \(error)")
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    private func send(report: String, on connection: inout HTTPConnection) async throws {
        let clock = ContinuousClock()
        let began = clock.now
        let response: HTTPConnection.Response
        do {
            response = try await connection.send(
                .POST, "/v1/workers/\(worker.id)/telemetry", body: ByteBuffer(string: report))
        } catch {
            // A send cut short because the run is ending is no failure of Fulcrum's, nor a standby's redirection.
            if !Task.isCancelled, !(error is HTTPConnection.NotLeader) { context.recorder.call(.telemetry, seconds: (clock.now - began).seconds, failed: true) }
            throw error
        }
        let failed = response.status != .accepted
        context.recorder.call(.telemetry, seconds: (clock.now - began).seconds, failed: failed)
        if !failed { control.answered(at: context.elapsed) }
        if failed {
            context.recorder.error(
                "telemetry from \(worker.id): HTTP \(response.status.code) \(String(buffer: response.body).prefix(200))")
        }
    }

    private struct Placement: Decodable {
        var version: Int
        var slots: [[Int]]
        var excludedRanks: [Int]
    }

    private func placementLoop() async {
        let clock = ContinuousClock()
        var version = 0
        while !Task.isCancelled, !control.killed {
            do {
                try await HTTPConnection.with(endpoints: context.endpoints, token: context.token) { connection in
                    while !Task.isCancelled, !control.killed {
                        let began = clock.now
                        let response = try await connection.send(
                            .GET, "/v1/workers/\(worker.id)/placement" + (version > 0 ? "?wait=30" : ""),
                            headers: version > 0 ? [("If-None-Match", "\"\(version)\"")] : [])
                        if response.status == .notModified { continue }
                        guard response.status == .ok else {
                            context.recorder.call(.placementPoll, seconds: (clock.now - began).seconds, failed: true)
                            context.recorder.error(
                                "placement of \(worker.id): HTTP \(response.status.code) \(String(buffer: response.body).prefix(200))")
                            try await Task.sleep(for: .seconds(1))
                            continue
                        }
                        let placement = try JSONDecoder().decode(Placement.self, from: Data(response.body.readableBytesView))
                        let moved = engine.experts.apply(rank: worker.rank, version: placement.version, slots: placement.slots)
                        let ackBegan = clock.now
                        let ack = try await connection.send(
                            .POST, "/v1/workers/\(worker.id)/placement/ack",
                            body: ByteBuffer(string: #"{"version": \#(placement.version)}"#))
                        context.recorder.call(
                            .placementAck, seconds: (clock.now - ackBegan).seconds, failed: ack.status != .ok)
                        guard ack.status == .ok else {
                            context.recorder.error("ack of \(worker.id): HTTP \(ack.status.code)")
                            continue
                        }
                        version = placement.version
                        context.placements.applied(
                            unit: worker.unit.id, rank: worker.rank, version: version, moved: moved,
                            excluded: placement.excludedRanks, at: context.elapsed)
                        context.recorder.count {
                            $0.placementsApplied += 1
                            $0.movedSlots += moved
                        }
                    }
                }
            } catch {
                if Task.isCancelled || control.killed { return }
                if error is HTTPConnection.NotLeader {
                    context.recorder.count { $0.leaderChanges += 1 }
                    continue
                }
                context.recorder.error("placement poll of \(worker.id): \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
