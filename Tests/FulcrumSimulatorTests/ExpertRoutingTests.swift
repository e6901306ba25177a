import Testing

@testable import FulcrumSimulator

@Suite("Expert routing of a simulated unit")
struct ExpertRoutingTests {
    static let unit = ClusterShape(prefillUnits: 1, decodeUnits: 0, prefix: "t").units[0]

    /// Every layer: expert 0 takes half the picks, the other 255 share the rest.
    static let skewed = ExpertWorkloads.Workload(
        name: "skewed",
        share: Array(repeating: [0.5] + Array(repeating: 0.5 / 255, count: 255), count: ClusterShape.moeLayers))

    @Test func slotCountsFollowTheWorkloadAndTheAppliedTable() {
        let routing = ExpertRouting(unit: Self.unit, workload: Self.skewed)
        // Version 1: slot i holds expert i mod 256, so expert 0 is on rank 0 (slot 0) and rank 28 (slot 256).
        routing.route(tokens: 1_000)
        let rank0 = routing.takeSlotTokens(rank: 0)
        let rank28 = routing.takeSlotTokens(rank: 28)
        #expect(rank0.count == ClusterShape.moeLayers && rank0[0].count == 9)
        // 1,000 tokens x 8 picks x 0.5, split over its 2 replicas.
        #expect(rank0[0][0] == 2_000)
        #expect(rank28[0][4] == 2_000)
        // Taken counts reset.
        #expect(routing.takeSlotTokens(rank: 0)[0][0] == 0)
        // Every pick lands somewhere, 8 per token per layer, even in reports too small for whole counts: the
        // fractions carry over (less than one pick per slot is pending at either end).
        for rank in 0..<Self.unit.gpus { _ = routing.takeSlotTokens(rank: rank) }
        var total = 0
        for _ in 0..<100 {
            routing.route(tokens: 10)
            total += (0..<Self.unit.gpus).reduce(0) { $0 + routing.takeSlotTokens(rank: $1)[7].reduce(0, +) }
        }
        #expect(abs(total - 8_000) < ClusterShape.slots)
    }

    @Test func balancednessDropsWhenTheHotExpertGetsMoreReplicas() {
        let routing = ExpertRouting(unit: Self.unit, workload: Self.skewed)
        let before = routing.measure()
        #expect(before.balancedness > 5)
        #expect(before.unserved == 0)
        // Give expert 0 one slot on every rank (the rest keep what they held): its load spreads 32 ways.
        for rank in 0..<Self.unit.gpus {
            let row = [0] + (1..<9).map { (rank * 8 + $0) % 256 }
            _ = routing.apply(rank: rank, version: 2, slots: Array(repeating: row, count: ClusterShape.moeLayers))
        }
        let after = routing.measure()
        #expect(after.balancedness < before.balancedness / 3)
    }

    @Test func aDeadRankServesNothingAndItsOnlyExpertsGoUnserved() {
        let routing = ExpertRouting(unit: Self.unit, workload: Self.skewed)
        routing.setServing(rank: 3, false)
        // Rank 3 held experts 27...35 (each also on no other rank): their share goes unserved.
        #expect(routing.measure().unserved > 0)
        routing.route(tokens: 100)
        #expect(routing.takeSlotTokens(rank: 3).allSatisfy { $0.allSatisfy { $0 == 0 } })
    }

    @Test func applyingATableCountsTheSlotsWhoseExpertChanged() {
        let routing = ExpertRouting(unit: Self.unit, workload: Self.skewed)
        var row = (0..<9).map { $0 }
        row[2] = 200
        row[5] = 201
        let moved = routing.apply(rank: 0, version: 2, slots: Array(repeating: row, count: ClusterShape.moeLayers))
        #expect(moved == 2 * ClusterShape.moeLayers)
        #expect(routing.versions()[0] == 2)
    }
}

@Suite("Trace replay")
struct TraceReplayTests {
    static let trace = Trace(
        name: "t",
        requests: [
            TraceRequest(time: 0, inputTokens: 100, cachedTokens: 0, outputTokens: 10),
            TraceRequest(time: 1, inputTokens: 200, cachedTokens: 50, outputTokens: 500),
            TraceRequest(time: 2, inputTokens: 300, cachedTokens: 0, outputTokens: 30),
        ])

    @Test func replaysFasterAndStartsOverWithFreshIDs() {
        var replay = TraceReplay(trace: Self.trace, speed: 2, tag: "x", maxOutputTokens: 100)
        let start = ContinuousClock.now
        #expect(replay.due(by: 0, start: start).map(\.id) == ["x-1"])
        #expect(replay.due(by: 1, start: start).map(\.inputTokens) == [200, 300])
        // One lap is 3 trace seconds (last arrival plus the mean gap): the trace starts again at 1.5 s.
        let again = replay.due(by: 1.5, start: start)
        #expect(again.map(\.id) == ["x-4"])
        #expect(again.first?.arrivedAt == start + .seconds(1.5))
        // Outputs are cut to the cap.
        #expect(replay.due(by: 2, start: start).first?.outputTokens == 100)
    }

    @Test func autoSpeedLoadsTheBusierPhaseToTheTarget() {
        let slow = TraceReplay.speed(for: Self.trace, maxOutputTokens: nil, prefillGPUs: 32, decodeGPUs: 144, utilisation: 0.5)
        let fast = TraceReplay.speed(for: Self.trace, maxOutputTokens: nil, prefillGPUs: 64, decodeGPUs: 288, utilisation: 0.5)
        #expect(slow > 0)
        #expect(abs(fast / slow - 2) < 1e-9)
        let lighter = TraceReplay.speed(for: Self.trace, maxOutputTokens: nil, prefillGPUs: 32, decodeGPUs: 144, utilisation: 0.25)
        #expect(abs(slow / lighter - 2) < 1e-9)
    }

    @Test func aResentRequestGetsANewIDOnItsBase() {
        let request = SimulatedRequest(
            id: "x-7", inputTokens: 10, cachedTokens: 0, outputTokens: 5, arrivedAt: .now)
        let once = request.resent()
        #expect(once.id == "x-7~r1")
        #expect(once.resent().id == "x-7~r2")
    }
}
