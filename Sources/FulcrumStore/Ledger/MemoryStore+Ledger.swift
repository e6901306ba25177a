import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: LedgerStore {
    public func assignments(requestID: String) async throws -> [AssignmentRecord] {
        state.withLock { state in Role.allCases.compactMap { state.ledger[requestID]?[$0] } }
    }

    public func recentAssignments(since: Date, limit: Int) async throws -> [AssignmentRecord] {
        let recent = state.withLock { state in
            state.ledger.values.flatMap { $0.values.filter { $0.assignedAt >= since } }
        }
        return Array(recent.sorted { ($0.assignedAt, $0.requestID) < ($1.assignedAt, $1.requestID) }.suffix(max(0, limit)))
    }
}
