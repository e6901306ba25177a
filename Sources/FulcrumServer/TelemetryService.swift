import FulcrumCore
import FulcrumStore
import Foundation

/// The telemetry hot path: validate, de-duplicate, keep the latest in memory, hand history to the writer. It never
/// waits on the database.
public struct TelemetryService: Sendable {
    public struct Settings: Sendable {
        /// Past this age a worker's load figures are stale (balancers then apply their staleness policy).
        public var staleAfter: Duration = .seconds(2)
        /// One history row per worker per this interval.
        public var sampleInterval: Duration = .seconds(10)

        public init() {}
    }

    let fleet: Fleet
    let writer: TelemetryWriter
    let hub: PlacementHub
    let estimator: ExpertLoadEstimator
    let settings: Settings

    public enum Outcome: Sendable {
        case applied(state: WorkerState)
        case duplicate(lastSeq: Int, state: WorkerState)
    }

    public func ingest(_ report: TelemetryReport, from id: String) throws -> Outcome {
        try Identifier.validate(id, field: "worker")
        guard let (member, unit) = fleet.member(id) else { throw RegistryError.workerNotFound(id) }
        try report.validate(for: unit)
        switch try fleet.ingest(report, from: id, sampleEvery: settings.sampleInterval) {
        case .duplicate(let lastSeq, let state):
            return .duplicate(lastSeq: lastSeq, state: state)
        case .applied(let sampled, let state):
            let now = Date()
            let w = member.worker
            let sample =
                sampled
                ? TelemetrySample(
                    worker: id, unit: w.unit, seq: report.seq, sentAt: report.sentAt, receivedAt: now,
                    prefill: report.prefill, decode: report.decode)
                : nil
            writer.record(sample: sample, contact: id, at: now)
            if let experts = report.experts {
                // Counts are attributed to the placement the worker says it runs, or the current one.
                let version = member.ackedVersion ?? hub.current(for: unit).version
                writer.record(experts: experts, unit: unit, rank: w.rank, placementVersion: version)
                if let placement = hub.placement(version, for: unit) {
                    estimator.add(experts, rank: w.rank, unit: unit, placement: placement)
                }
            }
            return .applied(state: state)
        }
    }
}
