import Testing

@testable import FulcrumSimulator

@Suite("Failure scenarios")
struct FailureTests {
    @Test func parsesEachKindWithDefaultsAndTargets() throws {
        #expect(try Failure(parsing: "kill:20") == Failure(kind: .kill, at: 20))
        #expect(try Failure(parsing: "slow:30") == Failure(kind: .slow, at: 30, amount: 3))
        #expect(try Failure(parsing: "slow:30:4.5") == Failure(kind: .slow, at: 30, amount: 4.5))
        #expect(try Failure(parsing: "delay:12:5=sim-d0-n1-g3") == Failure(kind: .delay, at: 12, amount: 5, worker: "sim-d0-n1-g3"))
        #expect(try Failure(parsing: "delay:12:5=sim-d0-n1-g3").description == "delay:12:5=sim-d0-n1-g3")
    }

    @Test(arguments: ["", "kill", "kill:x", "kill:-1", "kill:3:2", "slow:3:0.5", "delay:1:61", "boom:3", "kill:3=", "kill:3=="])
    func refusesMalformedScenarios(_ text: String) {
        #expect(throws: Failure.Invalid.self) { try Failure(parsing: text) }
    }

    @Test func defaultTargetsAreDistinctRanksOfTheFirstPrefillUnit() throws {
        let shape = ClusterShape(prefillUnits: 2, decodeUnits: 1, prefix: "t")
        let kill = try #require(Failure(kind: .kill, at: 1).target(in: shape))
        let slow = try #require(Failure(kind: .slow, at: 1).target(in: shape))
        #expect(kill.id == "t-p0-n0-g5")
        #expect(slow.id == "t-p0-n1-g1")
        #expect(Failure(kind: .kill, at: 1, worker: "t-d0-n17-g7").target(in: shape)?.rank == 143)
        #expect(Failure(kind: .kill, at: 1, worker: "nobody").target(in: shape) == nil)
    }
}
