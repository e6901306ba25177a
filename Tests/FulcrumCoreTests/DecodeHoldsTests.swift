import FulcrumCore
import Testing

@Suite("Decode hold-back clock")
struct DecodeHoldsTests {
    static let a = DecodeRequest(id: "a", contextTokens: 1_000)
    static let b = DecodeRequest(id: "b", contextTokens: 1_000)

    @Test func aRequestMayBeHeldUntilItsClockReachesTheLimitAndOnlyWhenTheGatewayAllows() {
        var holds = DecodeHolds(limit: 30)
        #expect(holds.mayHold([Self.a], allowed: false, now: 0) == [false])
        #expect(holds.mayHold([Self.a], now: 0) == [true])
        holds.record([Self.a], [.heldBack], now: 0)
        holds.record([Self.a], [.heldBack], now: 10)  // held again: the clock runs from the first hold
        // A refusal for lack of room anywhere does not restart it.
        holds.record([Self.a], [.noRoom], now: 20)
        #expect(holds.mayHold([Self.a, Self.b], now: 29.9) == [true, true])
        #expect(holds.mayHold([Self.a, Self.b], now: 30) == [false, true])
        // Placed: forgotten, a later hold starts a new clock.
        holds.record([Self.a], [.placed(.init(unit: 0, rank: 1))], now: 31)
        #expect(holds.count == 0)
        #expect(holds.mayHold([Self.a], now: 100) == [true])
    }

    @Test func theLimitCountsDecodeStepsWhenTheyAreSlow() {
        var holds = DecodeHolds(limit: 30)
        holds.record([Self.a], [.heldBack], now: 0)
        // 600 steps: 30 s at 50 ms a step, 20 minutes at 2 s.
        #expect(holds.mayHold([Self.a], now: 31, stepSeconds: 0.05) == [false])
        #expect(holds.mayHold([Self.a], now: 31, stepSeconds: 2) == [true])
        #expect(holds.mayHold([Self.a], now: 1_200, stepSeconds: 2) == [false])
        #expect(holds.mayHold([Self.a], now: 31) == [false])
    }

    @Test func longForgottenHoldsArePrunedOnlyPastTheBound() {
        var holds = DecodeHolds(limit: 1)
        holds.record([Self.a], [.heldBack], now: 0)
        holds.record([Self.b], [.heldBack], now: 10)
        holds.prune(now: 11, bound: 2)
        #expect(holds.count == 2)
        holds.prune(now: 11, bound: 1)
        #expect(holds.count == 1 && holds.mayHold([Self.b], now: 10.5) == [true])
    }
}
