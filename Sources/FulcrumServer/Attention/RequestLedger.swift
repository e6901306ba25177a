import FulcrumCore
import FulcrumStore
import Foundation

/// Where a request went and why: the assignment ledger in the store, merged with the rows the telemetry writer
/// holds that are not written yet.
struct RequestLedger: Sendable {
    let writer: TelemetryWriter
    let store: any LedgerStore
    let deadline: StoreDeadline

    /// The newest record of the request in each phase; `requestNotFound` when no phase was assigned.
    func records(of id: String) async throws -> [Role: AssignmentRecord] {
        // Buffered rows first, then the ledger: a row the writer commits between the two reads is in one of them
        // (the writer answers rows in flight until they are committed). The other order could miss it.
        let (pending, finishes) = writer.pending(requestID: id)
        let stored = try await deadline.run { [store] in try await store.assignments(requestID: id) }
        var records: [Role: AssignmentRecord] = [:]
        for record in stored + pending where record.assignedAt >= records[record.phase]?.assignedAt ?? .distantPast {
            records[record.phase] = record
        }
        for finish in finishes where records[finish.phase].map({ $0.finishedAt == nil && $0.assignedAt <= finish.at }) ?? false {
            records[finish.phase]?.finishedAt = finish.at
        }
        guard !records.isEmpty else { throw ServiceRefusal.requestNotFound(id) }
        return records
    }
}
