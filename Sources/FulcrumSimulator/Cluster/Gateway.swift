import DequeModule
import Foundation
import FulcrumCore
import NIOCore
import NIOHTTP1
import Synchronization

/// The cluster's API gateway: asks Fulcrum for a prefill rank for each arriving request, hands the prompt to that
/// rank's engine, and once its prefill is done asks for a decode rank and hands it on. Requests Fulcrum holds back
/// or cannot place yet are offered again shortly; a request a dead rank lost is sent again under a new id.
final class Gateway: Sendable {
    static let maxBatch = 4_096

    private struct Waiting {
        var request: SimulatedRequest
        var notBefore: ContinuousClock.Instant
    }

    private struct State {
        var prefill: Deque<Waiting> = []
        var decode: Deque<Waiting> = []
        /// Workers the simulation killed, and whether Fulcrum has marked them dead yet.
        var killed: [String: Bool] = [:]
        var assignedToKilled: [String: (before: Int, after: Int)] = [:]
    }

    private let context: SimulationContext
    private let engines: [String: UnitEngine]
    private let state = Mutex(State())

    init(context: SimulationContext, engines: [String: UnitEngine]) {
        self.context = context
        self.engines = engines
    }

    func arrive(_ requests: [SimulatedRequest]) {
        context.recorder.count { $0.arrived += requests.count }
        state.withLock { state in
            for request in requests { state.prefill.append(Waiting(request: request, notBefore: request.arrivedAt)) }
        }
    }

    func prefilled(_ requests: [SimulatedRequest]) {
        let now = ContinuousClock.now
        state.withLock { state in
            for request in requests { state.decode.append(Waiting(request: request, notBefore: now)) }
        }
    }

    /// Requests a dead rank held: their work is gone, so each starts over from prefill under a new id.
    func lost(_ requests: [SimulatedRequest]) {
        guard !requests.isEmpty else { return }
        context.recorder.count { $0.resent += requests.count }
        let now = ContinuousClock.now
        state.withLock { state in
            for request in requests { state.prefill.append(Waiting(request: request.resent(), notBefore: now)) }
        }
    }

    func killed(_ worker: String) { state.withLock { $0.killed[worker] = false } }
    func detected(_ worker: String) { state.withLock { $0.killed[worker] = true } }

    /// Assignments Fulcrum made to each killed worker before and after it marked the worker dead.
    func assignmentsToKilled() -> [String: (before: Int, after: Int)] { state.withLock { $0.assignedToKilled } }

    var waiting: Int { state.withLock { $0.prefill.count + $0.decode.count } }

    private func take(_ role: ClusterShape.Role) -> [SimulatedRequest] {
        let now = ContinuousClock.now
        return state.withLock { state in
            var taken: [SimulatedRequest] = []
            var later: Deque<Waiting> = []
            var queue = role == .prefill ? state.prefill : state.decode
            while let next = queue.popFirst() {
                if next.notBefore <= now, taken.count < Self.maxBatch { taken.append(next.request) } else { later.append(next) }
            }
            if role == .prefill { state.prefill = later } else { state.decode = later }
            return taken
        }
    }

    private func retry(_ requests: [SimulatedRequest], _ role: ClusterShape.Role, after delay: Duration) {
        let at = ContinuousClock.now + delay
        state.withLock { state in
            for request in requests {
                if role == .prefill {
                    state.prefill.append(Waiting(request: request, notBefore: at))
                } else {
                    state.decode.append(Waiting(request: request, notBefore: at))
                }
            }
        }
    }

    /// Sends what is due of one phase every 10 ms, one batch at a time, until cancelled.
    func lane(_ role: ClusterShape.Role) async {
        while !Task.isCancelled {
            do {
                try await HTTPConnection.with(endpoints: context.endpoints, token: context.token) { connection in
                    while !Task.isCancelled {
                        let batch = take(role)
                        if batch.isEmpty {
                            try await Task.sleep(for: .milliseconds(10))
                            continue
                        }
                        do {
                            try await assign(batch, role, on: &connection)
                        } catch {
                            // Sent again with the same ids: a leader that saw them answers as it did.
                            retry(batch, role, after: error is HTTPConnection.NotLeader ? .zero : .milliseconds(500))
                            throw error
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                if error is HTTPConnection.NotLeader {
                    context.recorder.count { $0.leaderChanges += 1 }
                    continue
                }
                context.recorder.error("\(role.rawValue) assignment connection: \(error)")
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    private struct Answer: Decodable {
        struct Assignment: Decodable {
            var id: String
            var unit: String
            var worker: String
            var rank: Int
        }

        struct Refusal: Decodable {
            var id: String
            var code: String
            var message: String
        }

        var assignments: [Assignment]
        var errors: [Refusal]?
    }

    private func assign(_ batch: [SimulatedRequest], _ role: ClusterShape.Role, on connection: inout HTTPConnection)
        async throws
    {
        let items = batch.map { request in
            role == .prefill
                ? #"{"id":"\#(request.id)","inputTokens":\#(request.inputTokens),"cachedTokens":\#(request.cachedTokens)}"#
                : #"{"id":"\#(request.id)","contextTokens":\#(request.inputTokens),"maxNewTokens":\#(request.outputTokens)}"#
        }
        let clock = ContinuousClock()
        let began = clock.now
        let response = try await connection.send(
            .POST, role == .prefill ? "/v1/prefill/assignments" : "/v1/decode/assignments",
            // It offers `held_back` requests again, so it lets decode hold them.
            body: ByteBuffer(
                string: #"{"requests":[\#(items.joined(separator: ","))]\#(role == .decode ? #","allowHold":true"# : "")}"#))
        let seconds = (clock.now - began).seconds
        let call: SimulationRecorder.Call = role == .prefill ? .prefillAssignment : .decodeAssignment
        guard response.status == .ok else {
            context.recorder.call(call, seconds: seconds, failed: true)
            let text = String(buffer: response.body)
            if response.status == .serviceUnavailable, text.contains("no_eligible_workers") {
                context.recorder.count { $0.noEligible += batch.count }
            } else {
                context.recorder.error("\(role.rawValue) assignment: HTTP \(response.status.code) \(text.prefix(300))")
            }
            retry(batch, role, after: .milliseconds(500))
            return
        }
        context.recorder.call(call, seconds: seconds)
        let answer = try JSONDecoder().decode(Answer.self, from: Data(response.body.readableBytesView))
        var byID: [String: SimulatedRequest] = [:]
        for request in batch { byID[request.id] = request }
        var dropped: [SimulatedRequest] = []
        for assignment in answer.assignments {
            guard let request = byID.removeValue(forKey: assignment.id) else { continue }
            countIfKilled(assignment.worker)
            guard let engine = engines[assignment.unit] else {
                context.recorder.error("\(assignment.id) assigned to unknown unit \(assignment.unit)")
                continue
            }
            if !engine.enqueue(request, rank: assignment.rank) { dropped.append(request) }
        }
        let placed = answer.assignments.count
        context.recorder.count {
            if role == .prefill { $0.prefillAssigned += placed } else { $0.decodeAssigned += placed }
        }
        var heldBack: [SimulatedRequest] = []
        var noRoom: [SimulatedRequest] = []
        for refusal in answer.errors ?? [] {
            guard let request = byID.removeValue(forKey: refusal.id) else { continue }
            switch refusal.code {
            case "held_back": heldBack.append(request)
            case "no_kv_capacity": noRoom.append(request)
            default:
                context.recorder.error("\(role.rawValue) assignment of \(refusal.id): \(refusal.code) \(refusal.message)")
            }
        }
        context.recorder.count {
            $0.heldBack += heldBack.count
            $0.noCapacity += noRoom.count
        }
        retry(heldBack, role, after: .milliseconds(100))
        retry(noRoom, role, after: .milliseconds(500))
        // Anything the answer did not mention would otherwise be lost: offer it again.
        if !byID.isEmpty {
            context.recorder.error("\(role.rawValue) answer left out \(byID.count) requests")
            retry(Array(byID.values), role, after: .milliseconds(500))
        }
        lost(dropped)
    }

    private func countIfKilled(_ worker: String) {
        state.withLock { state in
            guard let detected = state.killed[worker] else { return }
            var counts = state.assignedToKilled[worker] ?? (0, 0)
            if detected { counts.after += 1 } else { counts.before += 1 }
            state.assignedToKilled[worker] = counts
        }
    }
}
