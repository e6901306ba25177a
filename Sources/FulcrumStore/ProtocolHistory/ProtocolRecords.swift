import FulcrumCore
import Foundation

/// A worker applied placement `version` of its unit.
public struct PlacementAck: Codable, Hashable, Sendable {
    public var worker: String
    public var unit: String
    public var version: Int
    public var at: Date

    public init(worker: String, unit: String, version: Int, at: Date) {
        self.worker = worker
        self.unit = unit
        self.version = version
        self.at = at
    }
}

/// One downsampled telemetry row of a worker.
public struct TelemetrySample: Codable, Hashable, Sendable {
    public var worker: String
    public var unit: String
    public var seq: Int
    public var sentAt: Date
    public var receivedAt: Date
    public var prefill: PrefillLoad?
    public var decode: DecodeLoad?

    public init(
        worker: String, unit: String, seq: Int, sentAt: Date, receivedAt: Date, prefill: PrefillLoad?,
        decode: DecodeLoad?
    ) {
        self.worker = worker
        self.unit = unit
        self.seq = seq
        self.sentAt = sentAt
        self.receivedAt = receivedAt
        self.prefill = prefill
        self.decode = decode
    }
}

/// Tokens routed to each physical slot of a unit (`slotTokens[layer][slot]`), summed over the reports of its
/// workers whose windows ended in [windowStart, windowEnd].
public struct ExpertLoadWindow: Codable, Hashable, Sendable {
    public var unit: String
    public var windowStart: Date
    public var windowEnd: Date
    public var placementVersion: Int
    public var reports: Int
    public var slotTokens: [[Int]]

    public init(
        unit: String, windowStart: Date, windowEnd: Date, placementVersion: Int, reports: Int, slotTokens: [[Int]]
    ) {
        self.unit = unit
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.placementVersion = placementVersion
        self.reports = reports
        self.slotTokens = slotTokens
    }
}

/// What the background writer persists in one transaction.
public struct TelemetryBatch: Hashable, Sendable {
    public var samples: [TelemetrySample] = []
    public var windows: [ExpertLoadWindow] = []
    public var acks: [PlacementAck] = []
    /// The newest contact time of each worker, for `workers.last_seen`.
    public var lastSeen: [String: Date] = [:]
    /// The attention balancers' ledger: new assignments, then finishes (which may be of those assignments).
    public var assignments: [AssignmentRecord] = []
    public var finishes: [RequestFinish] = []

    /// Protocol-history rows (samples, windows, acks) and ledger rows (assignments, finishes).
    public var historyRows: Int { samples.count + windows.count + acks.count }
    public var ledgerRows: Int { assignments.count + finishes.count }

    public init(
        samples: [TelemetrySample] = [], windows: [ExpertLoadWindow] = [], acks: [PlacementAck] = [],
        lastSeen: [String: Date] = [:], assignments: [AssignmentRecord] = [], finishes: [RequestFinish] = []
    ) {
        self.samples = samples
        self.windows = windows
        self.acks = acks
        self.lastSeen = lastSeen
        self.assignments = assignments
        self.finishes = finishes
    }

    public var isEmpty: Bool {
        samples.isEmpty && windows.isEmpty && acks.isEmpty && lastSeen.isEmpty && assignments.isEmpty
            && finishes.isEmpty
    }
}

/// A refused placement write.
public enum PlacementStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    case versionExists(unit: String, version: Int)

    public var description: String {
        switch self {
        case .versionExists(let unit, let version): "unit '\(unit)' already has placement version \(version)"
        }
    }
}
