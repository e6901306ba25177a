import FulcrumCore
import Foundation

/// The expert-load window a placement was solved from.
public struct LoadWindowSummary: Codable, Hashable, Sendable {
    /// The window asked for.
    public var windowSeconds: Double
    /// How far back the oldest counted report went (shorter than the window while it fills).
    public var spanSeconds: Double
    public var reports: Int
    public var totalTokens: Double

    public init(windowSeconds: Double, spanSeconds: Double, reports: Int, totalTokens: Double) {
        self.windowSeconds = windowSeconds
        self.spanSeconds = spanSeconds
        self.reports = reports
        self.totalTokens = totalTokens
    }
}

/// What a placement was predicted to do against the one it replaced, under the same load.
public struct PlacementPrediction: Codable, Hashable, Sendable {
    /// Σ per-layer peak GPU load / Σ mean; 1.0 is perfect.
    public var balancednessBefore: Double
    public var balancednessAfter: Double
    /// 1 − after/before of the summed per-layer peak GPU load.
    public var improvement: Double
    /// Replicas that changed slot (weights copied).
    public var moved: Int

    public init(balancednessBefore: Double, balancednessAfter: Double, improvement: Double, moved: Int) {
        self.balancednessBefore = balancednessBefore
        self.balancednessAfter = balancednessAfter
        self.improvement = improvement
        self.moved = moved
    }
}

/// What moving to a placement costs, and what it is predicted to save over the next interval.
public struct PlacementTransfer: Codable, Hashable, Sendable {
    public var transfers: Int
    /// Rounds of one send and one receive per GPU (`MigrationPlan`).
    public var rounds: Int
    public var bytes: Int
    /// rounds x expert bytes / link rate: how long the copy takes, every GPU of a round in parallel.
    public var seconds: Double
    /// improvement x interval x the MoE share of a step (taken as half): the step time a better balance saves
    /// before the next scheduled rebalance.
    public var gainSeconds: Double

    public init(transfers: Int, rounds: Int, bytes: Int, seconds: Double, gainSeconds: Double) {
        self.transfers = transfers
        self.rounds = rounds
        self.bytes = bytes
        self.seconds = seconds
        self.gainSeconds = gainSeconds
    }
}

/// Why a placement version was published and what it was expected to do.
public struct PlacementDetails: Codable, Hashable, Sendable {
    public var trigger: PlacementTrigger
    /// The version it replaced.
    public var basedOn: Int?
    /// Absent when there was no load to predict from (an operator's own table with no telemetry yet).
    public var prediction: PlacementPrediction?
    public var window: LoadWindowSummary?
    /// The copy it took; absent for a table the rebalancer did not plan.
    public var transfer: PlacementTransfer?
    /// An operator's action that publishes this version, appended to the audit trail with it; never read back.
    public var audit: AuditEntry?

    public init(
        trigger: PlacementTrigger, basedOn: Int? = nil, prediction: PlacementPrediction? = nil,
        window: LoadWindowSummary? = nil, transfer: PlacementTransfer? = nil, audit: AuditEntry? = nil
    ) {
        self.trigger = trigger
        self.basedOn = basedOn
        self.prediction = prediction
        self.window = window
        self.transfer = transfer
        self.audit = audit
    }
}

/// One entry of a unit's placement history, without its table.
public struct PlacementSummary: Codable, Hashable, Sendable {
    public var unit: String
    public var version: Int
    public var createdAt: Date
    public var excludedRanks: [Int]
    public var details: PlacementDetails

    public init(unit: String, version: Int, createdAt: Date, excludedRanks: [Int], details: PlacementDetails) {
        self.unit = unit
        self.version = version
        self.createdAt = createdAt
        self.excludedRanks = excludedRanks
        self.details = details
    }

    public init(_ placement: Placement, details: PlacementDetails) {
        self.init(
            unit: placement.unit, version: placement.version, createdAt: placement.createdAt,
            excludedRanks: placement.excludedRanks, details: details)
    }
}

/// A stored placement with its table.
public struct PlacementRecord: Hashable, Sendable {
    public var placement: Placement
    public var details: PlacementDetails

    public init(placement: Placement, details: PlacementDetails) {
        self.placement = placement
        self.details = details
    }

    public var summary: PlacementSummary { PlacementSummary(placement, details: details) }
}
