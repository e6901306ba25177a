import Foundation

/// Which logical expert each physical slot of a unit holds, per MoE layer: `phy2log[layer][slot]`. GPU `g` owns
/// slots `[g * slotsPerGpu, (g + 1) * slotsPerGpu)`. Versions only move forward; workers apply them in order.
public struct Placement: Codable, Hashable, Sendable {
    public var unit: String
    public var version: Int
    public var phy2log: [[Int]]
    /// Ranks whose slots serve nothing (their workers were dead when it was made): tokens go to the other replicas.
    /// Their slots keep what they held, so a rank that comes back has its weights already loaded.
    public var excludedRanks: [Int]
    public var createdAt: Date

    public init(unit: String, version: Int, phy2log: [[Int]], excludedRanks: [Int] = [], createdAt: Date) {
        self.unit = unit
        self.version = version
        self.phy2log = phy2log
        self.excludedRanks = excludedRanks
        self.createdAt = createdAt
    }

    /// What a freshly started expert-parallel engine runs before any rebalance: slot i holds expert
    /// i mod routedExperts in every layer. Served as version 1 until a real placement is published.
    public static func initial(for unit: DeploymentUnit, at date: Date) -> Placement {
        let row = (0..<unit.slots).map { $0 % unit.model.routedExperts }
        return Placement(
            unit: unit.id, version: 1, phy2log: Array(repeating: row, count: unit.model.moeLayers), createdAt: date)
    }

    /// The slots of one GPU: `[layer][localSlot]` → logical expert.
    public func slots(ofRank rank: Int, slotsPerGpu: Int) -> [[Int]] {
        let range = (rank * slotsPerGpu)..<((rank + 1) * slotsPerGpu)
        return phy2log.map { Array($0[range]) }
    }

    /// Checks that the table fits the unit: one row per MoE layer, one entry per slot, every expert id in range and
    /// every expert held by at least one slot of a serving rank in every layer.
    public static func validate(
        _ phy2log: [[Int]], excludedRanks: [Int] = [], for unit: DeploymentUnit
    ) throws(ValidationError) {
        for (index, rank) in excludedRanks.enumerated() {
            guard (0..<unit.gpus).contains(rank) else {
                throw ValidationError(
                    field: "excludedRanks[\(index)]", "must be a rank from 0 to \(unit.gpus - 1), got \(rank)")
            }
        }
        guard Set(excludedRanks).count == excludedRanks.count else {
            throw ValidationError(field: "excludedRanks", "must not name a rank twice")
        }
        let excluded = Set(excludedRanks)
        guard phy2log.count == unit.model.moeLayers else {
            throw ValidationError(
                field: "phy2log", "must have one row per MoE layer: \(unit.model.moeLayers), got \(phy2log.count)")
        }
        let experts = unit.model.routedExperts
        for (layer, row) in phy2log.enumerated() {
            guard row.count == unit.slots else {
                throw ValidationError(
                    field: "phy2log[\(layer)]", "must have one expert per slot: \(unit.slots), got \(row.count)")
            }
            var held = [Bool](repeating: false, count: experts)
            for (slot, expert) in row.enumerated() {
                guard (0..<experts).contains(expert) else {
                    throw ValidationError(
                        field: "phy2log[\(layer)][\(slot)]", "must be an expert id from 0 to \(experts - 1), got \(expert)")
                }
                if !excluded.contains(slot / unit.slotsPerGpu) { held[expert] = true }
            }
            if let missing = held.firstIndex(of: false) {
                throw ValidationError(
                    field: "phy2log[\(layer)]",
                    excluded.isEmpty ? "expert \(missing) has no slot" : "expert \(missing) has no slot on a serving rank")
            }
        }
    }
}
