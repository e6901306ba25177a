import FulcrumStore

/// How long a request waits for the store. PostgresNIO's pool queues requests while it cannot connect (for up to a
/// minute), so without a bound a database outage would hang every caller instead of answering 503.
struct StoreDeadline: Sendable {
    var limit: Duration = .seconds(5)

    /// Runs a store call within `limit`. A write that times out may still land; every write a request makes is safe
    /// to retry (registration is idempotent, a repeated create answers 409, a publish conflicts on its version).
    func run<Result: Sendable>(_ call: @escaping @Sendable () async throws -> Result) async throws -> Result {
        do {
            return try await withDeadline(limit, call)
        } catch is DeadlineExceeded {
            throw StoreUnavailable(reason: "no answer within \(limit)")
        }
    }
}
