/// How the GPUs of a unit get from one placement to the next: for every slot whose expert changes, the expert it
/// needs and a GPU that holds that expert's weights in the version in use (on the same node when one does), grouped
/// into rounds in which each GPU sends at most one expert and receives at most one, as vLLM's migration scheduler
/// does. Every transfer reads the weights of the version in use: a GPU keeps a slot's old weights until it has sent
/// what the plan asks of it, and switches to the new table after its last round.
public struct MigrationPlan: Codable, Hashable, Sendable {
    public struct Transfer: Codable, Hashable, Sendable {
        public var layer: Int
        /// The receiving rank and the slot, within the rank (0 to slots per GPU - 1), that changes.
        public var rank: Int
        public var slot: Int
        public var expert: Int
        /// The sending rank; nil when no serving rank holds the expert in the version in use (its weights come from
        /// the checkpoint).
        public var source: Int?
        public var round: Int

        public init(layer: Int, rank: Int, slot: Int, expert: Int, source: Int?, round: Int) {
            self.layer = layer
            self.rank = rank
            self.slot = slot
            self.expert = expert
            self.source = source
            self.round = round
        }
    }

    public var transfers: [Transfer]
    /// Transfers per round; a round's bytes are its transfers times `expertBytes`.
    public var rounds: [Int]
    public var expertBytes: Int

    public var bytes: Int { transfers.count * expertBytes }

    /// DeepSeek-V3's routed expert in FP8: three 7168 x 2048 matrices (gate, up, down) at one byte a weight.
    public static let deepSeekV3ExpertBytes = 3 * 7_168 * 2_048

    public init(transfers: [Transfer], rounds: [Int], expertBytes: Int) {
        self.transfers = transfers
        self.rounds = rounds
        self.expertBytes = expertBytes
    }

    /// - Parameters:
    ///   - old: the table in use, `[layer][slot]`.
    ///   - new: the table to move to, same shape.
    ///   - excludedRanks: ranks that neither send nor receive (their workers are dead).
    public static func make(
        from old: [[Int]], to new: [[Int]], slotsPerGpu: Int, gpusPerNode: Int, excludedRanks: Set<Int> = [],
        expertBytes: Int = deepSeekV3ExpertBytes
    ) -> MigrationPlan {
        guard slotsPerGpu > 0, old.count == new.count else { return MigrationPlan(transfers: [], rounds: [], expertBytes: expertBytes) }
        let perNode = max(1, gpusPerNode)
        // Every changed slot, with the ranks that hold its expert in the table in use.
        var pending: [(layer: Int, rank: Int, slot: Int, expert: Int, sources: [Int])] = []
        for layer in new.indices where old[layer].count == new[layer].count {
            var holders: [Int: [Int]] = [:]
            for (slot, expert) in old[layer].enumerated() where !excludedRanks.contains(slot / slotsPerGpu) {
                let rank = slot / slotsPerGpu
                if holders[expert]?.last != rank { holders[expert, default: []].append(rank) }
            }
            for (slot, expert) in new[layer].enumerated() where expert != old[layer][slot] {
                let rank = slot / slotsPerGpu
                guard !excludedRanks.contains(rank) else { continue }
                // Same node first, then the rest, each in rank order.
                let sources = (holders[expert] ?? []).filter { $0 != rank }.sorted {
                    let (a, b) = ($0 / perNode == rank / perNode, $1 / perNode == rank / perNode)
                    return a != b ? a : $0 < $1
                }
                pending.append((layer, rank, slot % slotsPerGpu, expert, sources))
            }
        }
        // Rounds: each rank receives at most one and sends at most one; a transfer takes the first free source in
        // its preference order. Each receiver's transfers wait in its own queue, fewest sources first, so a round
        // looks at each receiver's queue only until one of its transfers finds a free source.
        let ranks = (new.map(\.count).max() ?? 0) / slotsPerGpu + 1
        var queues = [[Int]](repeating: [], count: ranks)
        for index in pending.indices.sorted(by: { (pending[$0].sources.count, $0) < (pending[$1].sources.count, $1) }) {
            queues[pending[index].rank].append(index)
        }
        var transfers: [Transfer] = []
        transfers.reserveCapacity(pending.count)
        var rounds: [Int] = []
        var sending = [Bool](repeating: false, count: ranks)
        var left = pending.count
        while left > 0 {
            for rank in 0..<ranks { sending[rank] = false }
            var count = 0
            // The receivers with most left go first: they bound the number of rounds.
            let order = (0..<ranks).filter { !queues[$0].isEmpty }.sorted {
                (queues[$0].count, -$0) > (queues[$1].count, -$1)
            }
            for receiver in order {
                for (position, index) in queues[receiver].enumerated() {
                    let item = pending[index]
                    let source = item.sources.first { !sending[$0] }
                    guard item.sources.isEmpty || source != nil else { continue }
                    if let source { sending[source] = true }
                    transfers.append(
                        Transfer(layer: item.layer, rank: item.rank, slot: item.slot, expert: item.expert, source: source, round: rounds.count))
                    queues[receiver].remove(at: position)
                    count += 1
                    break
                }
            }
            // Every pending transfer has a source somewhere, and a round with nothing sent frees them all: a round
            // that places nothing cannot happen, but guard against looping forever all the same.
            guard count > 0 else { break }
            rounds.append(count)
            left -= count
        }
        return MigrationPlan(transfers: transfers, rounds: rounds, expertBytes: expertBytes)
    }

    /// Every rank's transfers, receiving or sending, in plan order: one pass for the whole unit.
    public var byRank: [Int: [Transfer]] {
        var result: [Int: [Transfer]] = [:]
        for transfer in transfers {
            result[transfer.rank, default: []].append(transfer)
            if let source = transfer.source, source != transfer.rank { result[source, default: []].append(transfer) }
        }
        return result
    }
}
