/// Turns what workers measure (tokens per physical slot) into what the solver needs (tokens per logical expert).
public enum ExpertLoad {
    /// Adds one GPU's slot counts into `load[layer][expert]`, using the table the GPU ran when it counted.
    ///
    /// - Parameters:
    ///   - slotTokens: `[layer][localSlot]` counts from one worker.
    ///   - phy2log: the unit's placement the worker ran (`[layer][slot]`).
    ///   - firstSlot: the worker's first slot (`rank * slotsPerGpu`).
    /// - Returns: false when the shapes do not fit (nothing is added).
    @discardableResult
    public static func fold(
        _ slotTokens: [[Int]], phy2log: [[Int]], firstSlot: Int, into load: inout [[Double]]
    ) -> Bool {
        guard slotTokens.count == phy2log.count, load.count == phy2log.count else { return false }
        for (layer, row) in slotTokens.enumerated() {
            guard firstSlot >= 0, firstSlot + row.count <= phy2log[layer].count else { return false }
        }
        for (layer, row) in slotTokens.enumerated() {
            for (offset, tokens) in row.enumerated() {
                let expert = phy2log[layer][firstSlot + offset]
                guard load[layer].indices.contains(expert) else { continue }
                load[layer][expert] += Double(tokens)
            }
        }
        return true
    }
}
