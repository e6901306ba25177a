import FulcrumCore
import FulcrumStore
import Foundation

/// The telemetry hot path: validate, de-duplicate, keep the latest in memory, hand history to the writer. It never
/// waits on the database.
public struct TelemetryService: Sendable {
    let fleet: Fleet
    let writer: TelemetryWriter
    let hub: PlacementHub
    let estimator: ExpertLoadEstimator
    let assignments: AssignmentService
    /// One history row per worker per this interval.
    let sampleInterval: Duration
    let events: EventCounters

    public func ingest(_ report: TelemetryReport, from id: String) throws -> Fleet.IngestOutcome {
        try Identifier.validate(id, field: "worker")
        guard let (member, unit) = fleet.member(id) else { throw RegistryError.workerNotFound(id) }
        try report.validate(for: unit)
        let outcome = try fleet.ingest(report, from: id, sampleEvery: sampleInterval)
        switch outcome {
        case .duplicate:
            events.report(applied: false)
            return outcome
        case .applied(let sampled, _):
            events.report(applied: true)
            let now = Date()
            let w = member.worker
            let sample =
                sampled
                ? TelemetrySample(
                    worker: id, unit: w.unit, seq: report.seq, sentAt: report.sentAt, receivedAt: now,
                    prefill: report.prefill, decode: report.decode)
                : nil
            writer.record(sample: sample, contact: id, at: now)
            assignments.observe(report, worker: w, epoch: member.epoch, role: unit.role)
            if let experts = report.experts {
                // Counts are attributed to the placement the worker says it runs, or the current one.
                let version = member.ackedVersion ?? hub.current(for: unit).version
                estimator.add(experts, rank: w.rank, unit: unit, version: version, placement: hub.placement(version, for: unit))
            }
            return outcome
        }
    }
}
