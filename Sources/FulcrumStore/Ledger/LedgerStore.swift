import FulcrumCore
import Foundation

/// The assignment ledger's read side: where each request went and when it finished. Its rows are written with
/// the protocol history (`TelemetryBatch.assignments` and `finishes`), off the gateway's path.
public protocol LedgerStore: Sendable {
    /// The ledger's newest record of a request in each phase (prefill first).
    func assignments(requestID: String) async throws -> [AssignmentRecord]
    /// The assignments made at or after `since`, oldest first; the newest `limit` when there are more. What a
    /// replica taking over remembers, so a gateway's retry gets the old leader's answer.
    func recentAssignments(since: Date, limit: Int) async throws -> [AssignmentRecord]
}
