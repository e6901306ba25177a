import Dispatch

/// Runs CPU-bound solver work on a thread of its own. The cooperative pool has one thread per core (two here):
/// a 200 ms solve there would stall every request, timer and long poll scheduled behind it.
enum SolverQueue {
    private static let queue = DispatchQueue(label: "fulcrum.solver", qos: .utility)

    static func run<Result: Sendable, Failure: Error>(
        _ work: @escaping @Sendable () throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Swift.Result<Result, Failure>, Never>) in
            queue.async {
                continuation.resume(returning: Swift.Result { () throws(Failure) -> Result in try work() })
            }
        }
        return try outcome.get()
    }
}
