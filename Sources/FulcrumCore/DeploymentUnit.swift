import Foundation

/// Whether a unit runs the prompt (prefill) or the token-by-token generation (decode) phase.
public enum Role: String, Codable, Sendable, CaseIterable {
    case prefill
    case decode
}

/// The MoE shape of the model a unit serves; DeepSeek-V3 is 58 MoE layers, 256 routed experts in 8 groups.
public struct ModelShape: Codable, Hashable, Sendable {
    public var moeLayers: Int
    public var routedExperts: Int
    public var expertGroups: Int

    public init(moeLayers: Int, routedExperts: Int, expertGroups: Int) {
        self.moeLayers = moeLayers
        self.routedExperts = routedExperts
        self.expertGroups = expertGroups
    }

    public static let deepSeekV3 = ModelShape(moeLayers: 58, routedExperts: 256, expertGroups: 8)
}

/// A deployment unit: the GPUs that run one expert-parallel instance in lock-step (DeepSeek: 32 for prefill,
/// 144 for decode). Every GPU is one data-parallel rank and holds `slotsPerGpu` expert slots.
public struct DeploymentUnit: Codable, Hashable, Sendable {
    public var id: String
    public var role: Role
    public var nodes: Int
    public var gpusPerNode: Int
    public var model: ModelShape
    public var redundantExperts: Int
    public var createdAt: Date

    public init(
        id: String, role: Role, nodes: Int, gpusPerNode: Int, model: ModelShape, redundantExperts: Int,
        createdAt: Date
    ) {
        self.id = id
        self.role = role
        self.nodes = nodes
        self.gpusPerNode = gpusPerNode
        self.model = model
        self.redundantExperts = redundantExperts
        self.createdAt = createdAt
    }

    public var gpus: Int { nodes * gpusPerNode }
    public var slots: Int { model.routedExperts + redundantExperts }
    public var slotsPerGpu: Int { slots / gpus }

    /// Bounds that keep every derived figure far from overflow while covering any cluster we can imagine
    /// (DeepSeek's largest unit is 144 GPUs; its whole fleet 2,224).
    public enum Limits {
        public static let nodes = 1...1_024
        public static let gpusPerNode = 1...72
        public static let gpus = 1...4_096
        public static let moeLayers = 1...512
        public static let routedExperts = 1...8_192
        public static let redundantExperts = 0...8_192
    }

    /// Checks the shape rules: ranges, groups that divide the experts, slots that divide over the GPUs.
    public func validate() throws(ValidationError) {
        try Identifier.validate(id, field: "id")
        try Limits.nodes.check(nodes, field: "nodes")
        try Limits.gpusPerNode.check(gpusPerNode, field: "gpusPerNode")
        guard Limits.gpus.contains(gpus) else {
            throw ValidationError(
                field: "nodes",
                "nodes x gpusPerNode = \(gpus) GPUs; a unit may have at most \(Limits.gpus.upperBound)")
        }
        try Limits.moeLayers.check(model.moeLayers, field: "model.moeLayers")
        try Limits.routedExperts.check(model.routedExperts, field: "model.routedExperts")
        try (1...model.routedExperts).check(model.expertGroups, field: "model.expertGroups")
        guard model.routedExperts % model.expertGroups == 0 else {
            throw ValidationError(
                field: "model.expertGroups",
                "\(model.expertGroups) groups do not divide \(model.routedExperts) routed experts evenly")
        }
        try Limits.redundantExperts.check(redundantExperts, field: "redundantExperts")
        guard slots % gpus == 0 else {
            throw ValidationError(
                field: "redundantExperts",
                "routedExperts + redundantExperts = \(slots) slots do not divide evenly over "
                    + "nodes x gpusPerNode = \(gpus) GPUs; slotsPerGpu must be a whole number")
        }
    }
}
