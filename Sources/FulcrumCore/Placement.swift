import Foundation

/// Which logical expert each physical slot of a unit holds, per MoE layer: `phy2log[layer][slot]`. GPU `g` owns
/// slots `[g * slotsPerGpu, (g + 1) * slotsPerGpu)`. Versions only move forward; workers apply them in order.
public struct Placement: Codable, Hashable, Sendable {
    public var unit: String
    public var version: Int
    public var phy2log: [[Int]]
    public var createdAt: Date

    public init(unit: String, version: Int, phy2log: [[Int]], createdAt: Date) {
        self.unit = unit
        self.version = version
        self.phy2log = phy2log
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
    /// every expert held by at least one slot in every layer.
    public static func validate(_ phy2log: [[Int]], for unit: DeploymentUnit) throws(ValidationError) {
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
                held[expert] = true
            }
            if let missing = held.firstIndex(of: false) {
                throw ValidationError(field: "phy2log[\(layer)]", "expert \(missing) has no slot")
            }
        }
    }
}
