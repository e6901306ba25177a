import FulcrumCore
import Foundation
import Synchronization

extension MemoryStore: LedgerStore {
    public func assignments(requestID: String) async throws -> [AssignmentRecord] {
        state.withLock { state in Role.allCases.compactMap { state.ledger[requestID]?[$0] } }
    }
}
