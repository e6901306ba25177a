import FulcrumCore
/// What a simulation run measured: the text, JSON (`--report FILE`) and SVG chart all come from this.
public struct SimulationReport: Codable, Sendable {
    public struct Settings: Codable, Sendable {
        public var target: String
        public var prefillUnits: Int
        public var decodeUnits: Int
        public var workers: Int
        public var trace: String
        public var traceRequests: Int
        public var speed: Double
        public var durationSeconds: Double?
        public var maxOutputTokens: Int?
        public var telemetryIntervalSeconds: Double
        public var workloadPeriodSeconds: Double
        public var unitPolicy: [String: Double]?
        public var failures: [String]
    }

    public struct Requests: Codable, Sendable {
        public var arrived: Int
        public var prefillAssigned: Int
        public var prefilled: Int
        public var decodeAssigned: Int
        public var finished: Int
        /// Arrived and not finished when the run ended.
        public var unfinished: Int
        /// Lost on a dead rank and sent again under a new id.
        public var resent: Int
        public var heldBack: Int
        public var noKVCapacity: Int
        public var noEligibleWorkers: Int
        /// Requests whose ledger in Fulcrum (`GET /v1/requests/{id}`) was read back after the run, and how many
        /// of them showed both phases assigned and finished.
        public var ledgerChecked: Int
        public var ledgerComplete: Int
    }

    public struct Throughput: Codable, Sendable {
        public var requestsPerSecond: Double
        public var prefillTokensPerSecond: Double
        public var decodeTokensPerSecond: Double
        public var telemetryReportsPerSecond: Double
        public var assignmentsPerSecond: Double
    }

    public struct Balance: Codable, Sendable {
        /// Σ mean rank cost / Σ max rank cost over the lock-step steps while arrivals ran (1.0: no GPU ever
        /// waits); the drain after is left out.
        public var prefillEfficiency: Double?
        public var decodeEfficiency: Double?
        /// Expert load max/mean over GPUs (Σ over layers), averaged over the run's samples, first and last.
        public var expertBalancednessMean: Double?
        public var expertBalancednessFirst: Double?
        public var expertBalancednessLast: Double?
    }

    public struct Point: Codable, Sendable {
        public var seconds: Double
        public var arrived: Int
        public var finished: Int
        public var inFlight: Int
        public var prefillEfficiency: Double?
        public var decodeEfficiency: Double?
        public var expertBalancedness: Double?
        /// The newest placement version any unit's workers applied.
        public var placementVersion: Int
        /// Live workers running their unit's newest version, of all live workers.
        public var workersOnNewest: Int
        public var liveWorkers: Int
        public var errors: Int
    }

    public struct Percentiles: Codable, Sendable {
        public var count: Int
        public var failed: Int
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var p999: Double
        public var max: Double
    }

    /// A placement version as the simulated workers received and applied it.
    public struct PlacementVersion: Codable, Sendable {
        public var version: Int
        /// Seconds into the run when the first rank received it.
        public var firstReceived: Double
        /// Seconds from the first rank's receipt to the last rank's ack.
        public var spreadSeconds: Double
        public var appliedBy: Int
        public var movedSlots: Int
        public var excludedRanks: [Int]
    }

    public struct UnitPlacements: Codable, Sendable {
        public var unit: String
        /// Fulcrum's current version and whether every live rank acknowledged it (`/placement/status`).
        public var currentVersion: Int?
        public var live: Bool?
        public var liveRanks: Int?
        public var acked: Int?
        public var versions: [PlacementVersion]
    }

    public struct Placements: Codable, Sendable {
        /// New versions the workers received (version 1, the start-up table, not counted), over all units.
        public var published: Int
        /// Versions applied and acknowledged, counted per worker.
        public var acked: Int
        /// Expert slots whose expert changed, over every worker that applied a new version.
        public var movedExperts: Int
        public var liveUnits: Int
        public var units: [UnitPlacements]
    }

    public struct FailureOutcome: Codable, Sendable {
        public var failure: String
        public var kind: Failure.Kind
        public var worker: String
        public var atSeconds: Double
        /// kill: seconds until Fulcrum marked the worker dead.
        public var detectedAfterSeconds: Double?
        /// kill: seconds from the last report Fulcrum accepted from the worker until it was marked dead: the
        /// silence the liveness timeout measured (plus up to one liveness pass and one status poll, less the last
        /// answer's way back). Absent when Fulcrum already held the worker dead at the kill.
        public var silentSecondsAtDetection: Double?
        /// kill: seconds until the unit's live workers applied a placement that excludes the rank.
        public var excludedAfterSeconds: Double?
        /// kill: assignments Fulcrum made to the worker after it died and before it marked it dead, and after.
        public var assignedBeforeDetection: Int?
        public var assignedAfterDetection: Int?
        public var finalState: String?
    }

    public struct Process: Codable, Sendable {
        public var label: String
        public var cpuCores: Double
        public var rssMiB: Double
    }

    public struct Check: Codable, Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    public var settings: Settings
    public var elapsedSeconds: Double
    /// Stopped (Ctrl-C, SIGTERM) before its duration and drain ended: requests in flight were not waited for.
    public var stoppedEarly: Bool
    public var requests: Requests
    public var throughput: Throughput
    public var balance: Balance
    public var timeline: [Point]
    public var latencyMillis: [String: Percentiles]
    public var requestSeconds: [String: Percentiles]
    public var placements: Placements
    public var failures: [FailureOutcome]
    public var processes: [Process]
    public var errors: Int
    public var errorSamples: [String]
    /// Calls a standby answered with the leader's address (`Fulcrum-Leader`), sent again there: a failover's mark.
    public var leaderChanges: Int
    public var checks: [Check]

    public var passed: Bool { checks.allSatisfy(\.passed) }
}

extension SimulationReport.Percentiles {
    init?(_ values: [Double], failed: Int, scale: Double) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func at(_ q: Double) -> Double { percentile(sorted, q) * scale }
        self.init(
            count: sorted.count, failed: failed, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999),
            max: (sorted.last ?? 0) * scale)
    }
}
