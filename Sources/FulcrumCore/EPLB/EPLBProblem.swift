/// How replicas are spread: DeepSeek's two policies (DOMAIN §2.3).
public enum EPLBPolicy: String, Codable, Sendable, CaseIterable {
    /// Every expert group stays on one node, each node holding groups/nodes groups; replicas stay on their node.
    case hierarchical
    /// One group, one node: any expert anywhere.
    case global

    /// DeepSeek's rule: hierarchical when the groups divide evenly over the nodes.
    public static func automatic(groups: Int, nodes: Int) -> EPLBPolicy {
        groups % nodes == 0 ? .hierarchical : .global
    }
}

/// One rebalancing problem: loads per layer and expert, and the unit's shape.
public struct EPLBProblem: Sendable {
    /// `weight[layer][expert]`: tokens routed to each logical expert over the window.
    public var weight: [[Double]]
    /// Physical expert slots in the unit (P).
    public var replicas: Int
    public var groups: Int
    public var nodes: Int
    public var gpus: Int
    public var policy: EPLBPolicy

    public static let maxLoad = 1e15
    public static let maxReplicas = 65_536
    public static let maxLayers = 1_024

    public var layers: Int { weight.count }
    public var experts: Int { weight.first?.count ?? 0 }
    public var slotsPerGpu: Int { replicas / gpus }

    /// Validates the shape and the loads; the policy defaults to DeepSeek's rule.
    public init(
        weight: [[Double]], replicas: Int, groups: Int, nodes: Int, gpus: Int, policy: EPLBPolicy? = nil
    ) throws(EPLBError) {
        guard let experts = weight.first?.count, experts > 0 else {
            throw EPLBError("weight must have at least one layer of at least one expert")
        }
        if let ragged = weight.firstIndex(where: { $0.count != experts }) {
            throw EPLBError("weight rows must all have \(experts) experts; row \(ragged) has \(weight[ragged].count)")
        }
        for (layer, row) in weight.enumerated() {
            // Token counts; the bound keeps every sum of a row finite and exact enough to compare.
            if let bad = row.firstIndex(where: { !$0.isFinite || $0 < 0 || $0 > Self.maxLoad }) {
                throw EPLBError(
                    "weight[\(layer)][\(bad)] must be a finite, non-negative load of at most 1e15; got \(row[bad])")
            }
        }
        guard gpus > 0, nodes > 0, groups > 0, replicas > 0 else {
            throw EPLBError("replicas, groups, nodes and gpus must be positive")
        }
        guard replicas <= Self.maxReplicas, weight.count <= Self.maxLayers else {
            throw EPLBError(
                "at most \(Self.maxReplicas) replicas and \(Self.maxLayers) layers; got \(replicas) and \(weight.count)")
        }
        guard replicas % gpus == 0 else {
            throw EPLBError("\(replicas) replicas do not divide evenly over \(gpus) GPUs")
        }
        guard replicas >= experts else {
            throw EPLBError("\(replicas) replicas cannot hold \(experts) experts: every expert needs a slot")
        }
        guard experts % groups == 0 else {
            throw EPLBError("\(groups) groups do not divide \(experts) experts evenly")
        }
        guard gpus % nodes == 0 else {
            throw EPLBError("\(gpus) GPUs do not divide evenly over \(nodes) nodes")
        }
        let chosen = policy ?? .automatic(groups: groups, nodes: nodes)
        if chosen == .hierarchical {
            guard groups % nodes == 0 else {
                throw EPLBError("the hierarchical policy needs the \(groups) groups to divide over \(nodes) nodes")
            }
            guard replicas % nodes == 0 else {
                throw EPLBError("the hierarchical policy needs the \(replicas) replicas to divide over \(nodes) nodes")
            }
        }
        self.weight = weight
        self.replicas = replicas
        self.groups = groups
        self.nodes = nodes
        self.gpus = gpus
        self.policy = chosen
    }
}

/// A problem the solver cannot take, and why.
public struct EPLBError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A placement for every layer, with what it costs.
public struct EPLBSolution: Hashable, Sendable {
    /// `phy2log[layer][slot]` → logical expert.
    public var phy2log: [[Int]]
    /// `logcnt[layer][expert]` → replicas of the expert.
    public var logcnt: [[Int]]
    public var gpus: Int

    public init(phy2log: [[Int]], logcnt: [[Int]], gpus: Int) {
        self.phy2log = phy2log
        self.logcnt = logcnt
        self.gpus = gpus
    }

    /// `log2phy[layer][expert][k]` → the slot of its k-th replica, -1 padded to the largest replica count.
    public var log2phy: [[[Int]]] {
        let width = logcnt.lazy.flatMap { $0 }.max() ?? 1
        return zip(phy2log, logcnt).map { slots, counts in
            var table = Array(repeating: Array(repeating: -1, count: width), count: counts.count)
            var filled = Array(repeating: 0, count: counts.count)
            for (slot, expert) in slots.enumerated() {
                table[expert][filled[expert]] = slot
                filled[expert] += 1
            }
            return table
        }
    }

    /// Load of every GPU in every layer: each replica carries weight/logcnt of its expert.
    public func gpuLoads(_ weight: [[Double]]) -> [[Double]] {
        let perGpu = phy2log.first.map { $0.count / gpus } ?? 0
        return phy2log.indices.map { layer in
            (0..<gpus).map { gpu in
                (gpu * perGpu..<(gpu + 1) * perGpu).reduce(0.0) { sum, slot in
                    let expert = phy2log[layer][slot]
                    return sum + weight[layer][expert] / Double(logcnt[layer][expert])
                }
            }
        }
    }
}

/// Max over mean of a set of loads (1.0 is perfect); the figure DeepSeek's EPLB reports.
public func balancedness(_ loads: [Double]) -> Double {
    let total = loads.reduce(0, +)
    guard total > 0 else { return 1 }
    return (loads.max() ?? 0) / (total / Double(loads.count))
}
