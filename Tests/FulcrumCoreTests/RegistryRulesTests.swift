import FulcrumCore
import Foundation
import Testing

@Suite("Registry rules")
struct RegistryRulesTests {
    let unit = DeploymentUnitTests.unit(nodes: 18)
    let now = Date(timeIntervalSince1970: 1_000)

    func registration(_ id: String = "w", node: Int = 17, gpu: Int = 7, kv: Int = 1_000) -> WorkerRegistration {
        WorkerRegistration(
            id: id, unit: unit.id, node: node, gpu: gpu, capacity: WorkerCapacity(kvTokens: kv, maxBatchTokens: 4_096))
    }

    @Test func rankIsNodeTimesGpusPerNodePlusGpu() throws {
        let outcome = try RegistryRules.register(registration(), unit: unit, existing: nil, slotHolder: nil, at: now)
        #expect(outcome.worker.rank == 143)
        #expect(outcome.created && outcome.change?.to == .active && outcome.change?.from == nil)
    }

    @Test(arguments: [
        (17, 8, "gpu"), (18, 0, "node"), (-1, 0, "node"), (0, -1, "gpu"),
    ])
    func positionsOutsideTheUnitAreInvalid(node: Int, gpu: Int, field: String) {
        #expect {
            try RegistryRules.register(
                registration(node: node, gpu: gpu), unit: unit, existing: nil, slotHolder: nil, at: now)
        } throws: { error in
            guard case .invalid(let validation) = error as? RegistryError else { return false }
            return validation.field == field
        }
    }

    @Test(arguments: [0, -5, 2_000_000_000])
    func absurdCapacitiesAreInvalid(kv: Int) {
        #expect(throws: RegistryError.self) {
            try RegistryRules.register(registration(kv: kv), unit: unit, existing: nil, slotHolder: nil, at: now)
        }
    }

    @Test func anotherLiveWorkerOnTheGpuIsAConflict() {
        #expect(throws: RegistryError.slotTaken(unit: unit.id, node: 17, gpu: 7, heldBy: "other")) {
            try RegistryRules.register(registration(), unit: unit, existing: nil, slotHolder: "other", at: now)
        }
    }

    @Test func transitionToTheSameStateRecordsNothing() throws {
        let worker = try RegistryRules.register(
            registration(), unit: unit, existing: nil, slotHolder: nil, at: now
        ).worker
        #expect(try RegistryRules.transition(worker, to: .active, reason: "x", slotHolder: nil, at: now) == nil)
        let drained = try #require(
            try RegistryRules.transition(worker, to: .draining, reason: "scale down", slotHolder: nil, at: now))
        #expect(drained.worker.state == .draining && drained.change.from == .active)
    }

    @Test func deletionNeedsEveryWorkerDead() {
        #expect(throws: RegistryError.unitHasLiveWorkers(unit: "u", live: 3)) {
            try RegistryRules.checkDeletable(unit: "u", liveWorkers: 3)
        }
        #expect(throws: Never.self) { try RegistryRules.checkDeletable(unit: "u", liveWorkers: 0) }
    }
}

@Suite("Rank eligibility")
struct RankEligibilityTests {
    @Test(arguments: WorkerState.allCases)
    func onlyActiveRanksThatHaveReportedTakeWork(state: WorkerState) {
        for policy in StalenessPolicy.allCases {
            #expect(RankLoad.eligible(state: state, hasReport: true, stale: false, policy: policy) == (state == .active))
            #expect(!RankLoad.eligible(state: state, hasReport: false, stale: true, policy: policy))
        }
    }

    @Test func staleRanksFollowThePolicy() {
        #expect(RankLoad.eligible(state: .active, hasReport: true, stale: true, policy: .lastPlusAssigned))
        #expect(!RankLoad.eligible(state: .active, hasReport: true, stale: true, policy: .exclude))
    }
}
