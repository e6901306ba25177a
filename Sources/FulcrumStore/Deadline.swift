/// Thrown by `withDeadline` when the work did not finish in time.
public struct DeadlineExceeded: Error, Hashable, Sendable {}

/// Runs `work`, cancelling it and throwing `DeadlineExceeded` if it takes longer than `limit`. A health check
/// must answer even when the database hangs rather than refuses.
public func withDeadline<Result: Sendable>(
    _ limit: Duration, _ work: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask { try await work() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let result = first else {
            throw DeadlineExceeded()
        }
        return result
    }
}
