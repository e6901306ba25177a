import Foundation

/// An operator's constraint on the expert placement of one rank: `pin` keeps a replica of the expert on it, `forbid`
/// keeps the expert off it (for example a GPU with ECC errors). Honoured by every rebalance until it expires.
public struct ExpertRule: Codable, Hashable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable, StrictEnum {
        case pin
        case forbid
    }

    public var id: Int
    public var kind: Kind
    public var expert: Int
    public var rank: Int
    /// nil: every MoE layer.
    public var layer: Int?
    public var expiresAt: Date
    public var createdAt: Date
    public var createdBy: String
    public var reason: String?

    public init(
        id: Int, kind: Kind, expert: Int, rank: Int, layer: Int?, expiresAt: Date, createdAt: Date, createdBy: String,
        reason: String?
    ) {
        self.id = id
        self.kind = kind
        self.expert = expert
        self.rank = rank
        self.layer = layer
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.reason = reason
    }

    public func applies(to layer: Int) -> Bool { self.layer == nil || self.layer == layer }

    /// Rules may last at most this long.
    public static let longestLife: TimeInterval = 30 * 86_400

    /// Checks a new rule against the unit's shape, the time and the rules already in force: a pin and a forbid of
    /// the same expert on the same rank and layer, more pins on a rank than it has slots, or an expert forbidden on
    /// every rank would leave no placement that honours them all.
    public static func check(_ rule: ExpertRule, unit: DeploymentUnit, active: [ExpertRule], at now: Date)
        throws(ExpertRuleError)
    {
        do throws(ValidationError) {
            try (0...(unit.model.routedExperts - 1)).check(rule.expert, field: "expert")
            try (0...(unit.gpus - 1)).check(rule.rank, field: "rank")
            if let layer = rule.layer { try (0...(unit.model.moeLayers - 1)).check(layer, field: "layer") }
            guard rule.expiresAt > now else {
                throw ValidationError(field: "expiresAt", "must be in the future")
            }
            guard rule.expiresAt.timeIntervalSince(now) <= longestLife else {
                throw ValidationError(field: "expiresAt", "must be at most 30 days ahead")
            }
        } catch {
            throw .invalid(error)
        }
        let overlapping = active.filter { $0.layer == nil || rule.layer == nil || $0.layer == rule.layer }
        if let clash = overlapping.first(where: { $0.expert == rule.expert && $0.rank == rule.rank && $0.kind != rule.kind }) {
            throw .conflict("rule \(clash.id) already \(clash.kind == .pin ? "pins" : "forbids") expert \(rule.expert) on rank \(rule.rank)")
        }
        let layers = rule.layer.map { [$0] } ?? Array(0..<unit.model.moeLayers)
        for layer in layers {
            let rules = overlapping.filter { $0.applies(to: layer) } + [rule]
            let pinned = Set(rules.filter { $0.kind == .pin && $0.rank == rule.rank }.map(\.expert))
            if pinned.count > unit.slotsPerGpu {
                throw .conflict(
                    "rank \(rule.rank) would have \(pinned.count) experts pinned in layer \(layer) but holds \(unit.slotsPerGpu) slots")
            }
            let forbiddenOn = Set(rules.filter { $0.kind == .forbid && $0.expert == rule.expert }.map(\.rank))
            if forbiddenOn.count == unit.gpus {
                throw .conflict("expert \(rule.expert) would be forbidden on every rank in layer \(layer)")
            }
        }
    }
}

public enum ExpertRuleError: Error, Hashable, Sendable {
    case invalid(ValidationError)
    case conflict(String)
}

/// Makes a placement honour pin and forbid rules by swapping slots between GPUs: replica counts stay as solved,
/// each swap chosen to keep the two GPUs' peak lowest. Excluded ranks serve nothing and are left alone.
public enum ExpertRules {
    /// The rows of `phy2log` changed to honour `rules`, and the rules that could not be honoured (none unless they
    /// conflict with the excluded ranks).
    public static func apply(
        _ rules: [ExpertRule], to phy2log: [[Int]], weight: [[Double]], slotsPerGpu: Int, excludedRanks: Set<Int> = []
    ) -> (phy2log: [[Int]], unmet: [ExpertRule]) {
        guard !rules.isEmpty else { return (phy2log, []) }
        var result = phy2log
        var unmet: [ExpertRule] = []
        for layer in phy2log.indices {
            let layerRules = rules.filter { $0.applies(to: layer) && !excludedRanks.contains($0.rank) }
            guard !layerRules.isEmpty else { continue }
            var fixer = LayerFixer(
                row: result[layer], weight: weight[layer], slotsPerGpu: slotsPerGpu, rules: layerRules,
                excludedRanks: excludedRanks)
            unmet += fixer.honour()
            result[layer] = fixer.row
        }
        return (result, unmet)
    }

    /// Whether `row` honours every rule that applies to `layer`.
    public static func honoured(_ rules: [ExpertRule], row: [Int], layer: Int, slotsPerGpu: Int, excludedRanks: Set<Int> = [])
        -> Bool
    {
        rules.filter { $0.applies(to: layer) && !excludedRanks.contains($0.rank) }.allSatisfy { rule in
            let held = row[(rule.rank * slotsPerGpu)..<((rule.rank + 1) * slotsPerGpu)].contains(rule.expert)
            return rule.kind == .pin ? held : !held
        }
    }

    private struct LayerFixer {
        var row: [Int]
        let slotsPerGpu: Int
        let rules: [ExpertRule]
        let excludedRanks: Set<Int>
        /// Tokens per replica: swaps keep replica counts, so these never change.
        let perReplica: [Double]
        var gpuLoad: [Double]

        init(row: [Int], weight: [Double], slotsPerGpu: Int, rules: [ExpertRule], excludedRanks: Set<Int>) {
            self.row = row
            self.slotsPerGpu = slotsPerGpu
            self.rules = rules
            self.excludedRanks = excludedRanks
            var count = [Int](repeating: 0, count: weight.count)
            for (slot, expert) in row.enumerated() where !excludedRanks.contains(slot / slotsPerGpu) { count[expert] += 1 }
            perReplica = weight.indices.map { count[$0] > 0 ? weight[$0] / Double(count[$0]) : 0 }
            gpuLoad = [Double](repeating: 0, count: row.count / slotsPerGpu)
            for (slot, expert) in row.enumerated() { gpuLoad[slot / slotsPerGpu] += perReplica[expert] }
        }

        func forbidden(_ expert: Int, on gpu: Int) -> Bool {
            rules.contains { $0.kind == .forbid && $0.expert == expert && $0.rank == gpu }
        }

        /// Whether `expert` must stay on `gpu`: pinned there and this is its only copy on it.
        func anchored(_ expert: Int, on gpu: Int) -> Bool {
            rules.contains { $0.kind == .pin && $0.expert == expert && $0.rank == gpu }
                && slots(of: gpu).count { row[$0] == expert } == 1
        }

        func slots(of gpu: Int) -> Range<Int> { (gpu * slotsPerGpu)..<((gpu + 1) * slotsPerGpu) }

        /// May slot `a` (on `gpuA`) and slot `b` (on `gpuB`) trade experts without breaking a rule?
        func swappable(_ a: Int, _ b: Int) -> Bool {
            let (gpuA, gpuB) = (a / slotsPerGpu, b / slotsPerGpu)
            let (x, y) = (row[a], row[b])
            return gpuA != gpuB && x != y && !excludedRanks.contains(gpuB) && !forbidden(y, on: gpuA)
                && !forbidden(x, on: gpuB) && !anchored(x, on: gpuA) && !anchored(y, on: gpuB)
        }

        /// The swap partner for slot `a` among `candidates` that leaves the two GPUs' peak lowest.
        func bestPartner(for a: Int, among candidates: [Int]) -> Int? {
            let gpuA = a / slotsPerGpu
            var best: (slot: Int, peak: Double)?
            for b in candidates where swappable(a, b) {
                let gpuB = b / slotsPerGpu
                let delta = perReplica[row[b]] - perReplica[row[a]]
                let peak = max(gpuLoad[gpuA] + delta, gpuLoad[gpuB] - delta)
                if best.map({ peak < $0.peak }) ?? true { best = (b, peak) }
            }
            return best?.slot
        }

        mutating func swap(_ a: Int, _ b: Int) {
            let delta = perReplica[row[b]] - perReplica[row[a]]
            gpuLoad[a / slotsPerGpu] += delta
            gpuLoad[b / slotsPerGpu] -= delta
            row.swapAt(a, b)
        }

        mutating func honour() -> [ExpertRule] {
            var unmet: [ExpertRule] = []
            let (slotCount, perGpu) = (row.count, slotsPerGpu)
            let others = { (gpu: Int) in Array(0..<slotCount).filter { $0 / perGpu != gpu } }
            // Pins first, so that forbids cannot move a pinned expert away (it is anchored by then).
            for rule in rules where rule.kind == .pin {
                guard !slots(of: rule.rank).contains(where: { row[$0] == rule.expert }) else { continue }
                // Some slot of the rank trades its expert for a replica of the pinned one held elsewhere.
                let holders = others(rule.rank).filter { row[$0] == rule.expert }
                var best: (a: Int, b: Int, peak: Double)?
                for a in slots(of: rule.rank) {
                    guard let b = bestPartner(for: a, among: holders) else { continue }
                    let delta = perReplica[row[b]] - perReplica[row[a]]
                    let peak = max(gpuLoad[rule.rank] + delta, gpuLoad[b / slotsPerGpu] - delta)
                    if best.map({ peak < $0.peak }) ?? true { best = (a, b, peak) }
                }
                if let best { swap(best.a, best.b) } else { unmet.append(rule) }
            }
            for rule in rules where rule.kind == .forbid {
                for a in slots(of: rule.rank) where row[a] == rule.expert {
                    if let b = bestPartner(for: a, among: others(rule.rank).filter { row[$0] != rule.expert }) {
                        swap(a, b)
                    } else {
                        unmet.append(rule)
                    }
                }
            }
            return unmet
        }
    }
}
