/// The simulated cluster in DeepSeek's shapes: prefill units of 4 nodes x 8 GPUs and decode units of 18 x 8, each
/// with 256 routed + 32 redundant expert slots over 58 MoE layers.
public struct ClusterShape: Sendable {
    public enum Role: String, Sendable, Codable {
        case prefill, decode
    }

    public struct Unit: Sendable {
        public var id: String
        public var role: Role
        /// Index among the units of its role.
        public var index: Int
        public var nodes: Int
        public var gpusPerNode: Int { ClusterShape.gpusPerNode }
        public var gpus: Int { nodes * gpusPerNode }
        public var slotsPerGpu: Int { ClusterShape.slots / gpus }

        public func workerID(rank: Int) -> String { "\(id)-n\(rank / gpusPerNode)-g\(rank % gpusPerNode)" }
    }

    public struct Worker: Sendable {
        public var id: String
        public var unit: Unit
        public var rank: Int
        public var node: Int { rank / unit.gpusPerNode }
        public var gpu: Int { rank % unit.gpusPerNode }
    }

    public static let gpusPerNode = 8
    public static let moeLayers = 58
    public static let routedExperts = 256
    public static let expertGroups = 8
    public static let slots = 288
    /// KV cache a decode GPU registers: room for DeepSeek's ~88 requests of 4,989 tokens with headroom.
    public static let kvTokens = 600_000
    /// New tokens a prefill engine takes into one step.
    public static let maxBatchTokens = 16_384

    public let units: [Unit]
    public let workers: [Worker]

    public init(prefillUnits: Int, decodeUnits: Int, prefix: String) {
        let prefill = (0..<prefillUnits).map { Unit(id: "\(prefix)-p\($0)", role: .prefill, index: $0, nodes: 4) }
        let decode = (0..<decodeUnits).map { Unit(id: "\(prefix)-d\($0)", role: .decode, index: $0, nodes: 18) }
        units = prefill + decode
        workers = units.flatMap { unit in
            (0..<unit.gpus).map { Worker(id: unit.workerID(rank: $0), unit: unit, rank: $0) }
        }
    }

    public func units(_ role: Role) -> [Unit] { units.filter { $0.role == role } }
}
