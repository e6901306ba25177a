import FulcrumCore
import Foundation
import Testing

@Suite("Expert rules (pin and forbid)")
struct ExpertRulesTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func rule(_ id: Int, _ kind: ExpertRule.Kind, expert: Int, rank: Int, layer: Int? = nil) -> ExpertRule {
        ExpertRule(
            id: id, kind: kind, expert: expert, rank: rank, layer: layer, expiresAt: now.addingTimeInterval(600),
            createdAt: now, createdBy: "alice", reason: nil)
    }

    static func counts(_ row: [Int], experts: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: experts)
        for expert in row { counts[expert] += 1 }
        return counts
    }

    /// Random tables and rules: every rule honoured afterwards, and every expert keeps its replica count.
    @Test(arguments: 0..<8)
    func rulesAreHonouredWithoutChangingReplicaCounts(seed: Int) throws {
        var random = FulcrumEPLBTests.SplitMix(state: UInt64(seed))
        let (gpus, spg, experts, layers) = (8, 3, 16, 4)
        let weight = (0..<layers).map { _ in (0..<experts).map { _ in Double(random.next() % 1_000) } }
        let table = (0..<layers).map { _ in
            var row = (0..<(gpus * spg)).map { $0 % experts }
            row.shuffle(using: &random)
            return row
        }
        var rules: [ExpertRule] = []
        for id in 1...6 {
            let candidate = Self.rule(
                id, random.next() % 2 == 0 ? .pin : .forbid, expert: Int(random.next() % UInt64(experts)),
                rank: Int(random.next() % UInt64(gpus)), layer: random.next() % 3 == 0 ? nil : Int(random.next() % UInt64(layers)))
            let unit = DeploymentUnit(
                id: "u", role: .prefill, nodes: 1, gpusPerNode: gpus,
                model: ModelShape(moeLayers: layers, routedExperts: experts, expertGroups: 1),
                redundantExperts: gpus * spg - experts, createdAt: Self.now)
            if (try? ExpertRule.check(candidate, unit: unit, active: rules, at: Self.now)) != nil { rules.append(candidate) }
        }
        let (fixed, unmet) = ExpertRules.apply(rules, to: table, weight: weight, slotsPerGpu: spg)
        #expect(unmet.isEmpty)
        for layer in 0..<layers {
            #expect(ExpertRules.honoured(rules, row: fixed[layer], layer: layer, slotsPerGpu: spg))
            #expect(Self.counts(fixed[layer], experts: experts) == Self.counts(table[layer], experts: experts))
        }
        // Rows that already honour the rules are left as they are.
        #expect(ExpertRules.apply(rules, to: fixed, weight: weight, slotsPerGpu: spg).phy2log == fixed)
    }

    @Test func conflictingAndInvalidRulesAreRefused() throws {
        let unit = DeploymentUnit(
            id: "u", role: .prefill, nodes: 1, gpusPerNode: 2, model: ModelShape(moeLayers: 2, routedExperts: 4, expertGroups: 1),
            redundantExperts: 0, createdAt: Self.now)
        let forbid = Self.rule(1, .forbid, expert: 0, rank: 0)
        #expect(throws: ExpertRuleError.self) {
            try ExpertRule.check(Self.rule(2, .pin, expert: 0, rank: 0, layer: 1), unit: unit, active: [forbid], at: Self.now)
        }
        #expect(throws: ExpertRuleError.conflict("expert 0 would be forbidden on every rank in layer 0")) {
            try ExpertRule.check(Self.rule(2, .forbid, expert: 0, rank: 1), unit: unit, active: [forbid], at: Self.now)
        }
        let pins = [Self.rule(1, .pin, expert: 1, rank: 1), Self.rule(2, .pin, expert: 2, rank: 1)]
        #expect(throws: ExpertRuleError.self) {
            try ExpertRule.check(Self.rule(3, .pin, expert: 3, rank: 1), unit: unit, active: pins, at: Self.now)
        }
        var expired = Self.rule(4, .pin, expert: 1, rank: 0)
        expired.expiresAt = Self.now.addingTimeInterval(-1)
        #expect(throws: ExpertRuleError.invalid(ValidationError(field: "expiresAt", "must be in the future"))) {
            try ExpertRule.check(expired, unit: unit, active: [], at: Self.now)
        }
        #expect(throws: ExpertRuleError.self) {
            try ExpertRule.check(Self.rule(5, .pin, expert: 4, rank: 0), unit: unit, active: [], at: Self.now)
        }
    }

    @Test func thePlannerHonoursRulesEvenInLayersItWouldKeep() throws {
        let problem = try EPLBProblem(
            weight: Array(repeating: [50, 40, 30, 20, 10, 5, 5, 5], count: 3), replicas: 8, groups: 1, nodes: 1, gpus: 4,
            policy: .global)
        let current = try RebalancePlanner.propose(problem, current: Array(repeating: Array(0..<8), count: 3)).phy2log
        let rules = [Self.rule(1, .forbid, expert: current[0][0], rank: 0), Self.rule(2, .pin, expert: 7, rank: 3, layer: 2)]
        let proposal = try RebalancePlanner.propose(problem, current: current, rules: rules)
        for layer in 0..<3 {
            #expect(ExpertRules.honoured(rules, row: proposal.phy2log[layer], layer: layer, slotsPerGpu: 2))
        }
        #expect(proposal.moved > 0)
    }
}
