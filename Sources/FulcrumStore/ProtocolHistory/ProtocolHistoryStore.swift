import FulcrumCore
import Foundation

/// What the worker protocol leaves behind, written in batches by the telemetry writer off the hot path: telemetry
/// samples, closed expert-load windows, acknowledgements, workers' last contact and the assignment ledger's rows.
public protocol ProtocolHistoryStore: Sendable {
    /// Writes one batch: all of it or nothing.
    func append(_ batch: TelemetryBatch) async throws
    /// Deletes telemetry samples, expert-load windows and ledger rows older than `cutoff`; returns how many rows went.
    @discardableResult
    func pruneTelemetry(before cutoff: Date) async throws -> Int
    /// A worker's samples, oldest first, for operators and tests.
    func telemetrySamples(worker: String, limit: Int) async throws -> [TelemetrySample]
    /// A unit's expert-load windows, oldest first.
    func expertLoadWindows(unit: String, since: Date) async throws -> [ExpertLoadWindow]
}
