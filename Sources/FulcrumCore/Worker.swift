import Foundation

/// Where a worker stands in its lifecycle. Only `active` workers get new work.
public enum WorkerState: String, Codable, Sendable, CaseIterable {
    case active
    case cordoned
    case draining
    /// A drain finished: its in-flight requests reached zero, or the drain's deadline passed. Holds its GPU slot.
    case drained
    case dead

    /// A live worker holds its GPU slot; a dead one gives it up to whoever registers there next.
    public var isLive: Bool { self != .dead }
}

/// What one GPU rank can hold: KV-cache tokens (decode) and tokens per forward step (prefill).
public struct WorkerCapacity: Codable, Hashable, Sendable {
    public var kvTokens: Int
    public var maxBatchTokens: Int

    public init(kvTokens: Int, maxBatchTokens: Int) {
        self.kvTokens = kvTokens
        self.maxBatchTokens = maxBatchTokens
    }

    public enum Limits {
        public static let kvTokens = 1...1_000_000_000
        public static let maxBatchTokens = 1...10_000_000
    }

    public func validate() throws(ValidationError) {
        try Limits.kvTokens.check(kvTokens, field: "capacity.kvTokens")
        try Limits.maxBatchTokens.check(maxBatchTokens, field: "capacity.maxBatchTokens")
    }
}

/// One GPU rank of a unit: its data-parallel attention rank and its expert-parallel slots.
public struct Worker: Codable, Hashable, Sendable {
    public var id: String
    public var unit: String
    public var node: Int
    public var gpu: Int
    public var rank: Int
    public var capacity: WorkerCapacity
    public var state: WorkerState
    public var registeredAt: Date
    public var lastSeen: Date?

    public init(
        id: String, unit: String, node: Int, gpu: Int, rank: Int, capacity: WorkerCapacity, state: WorkerState,
        registeredAt: Date, lastSeen: Date?
    ) {
        self.id = id
        self.unit = unit
        self.node = node
        self.gpu = gpu
        self.rank = rank
        self.capacity = capacity
        self.state = state
        self.registeredAt = registeredAt
        self.lastSeen = lastSeen
    }
}

/// A recorded transition of a worker's state, with why it happened. `from` is nil when the worker first registers.
public struct WorkerStateChange: Codable, Hashable, Sendable {
    public var worker: String
    public var unit: String
    public var from: WorkerState?
    public var to: WorkerState
    public var reason: String
    public var at: Date

    public init(worker: String, unit: String, from: WorkerState?, to: WorkerState, reason: String, at: Date) {
        self.worker = worker
        self.unit = unit
        self.from = from
        self.to = to
        self.reason = reason
        self.at = at
    }
}
