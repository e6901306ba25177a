import Synchronization

/// Thrown by `withDeadline` when the work did not finish in time.
public struct DeadlineExceeded: Error, Hashable, Sendable {}

/// Runs `work` and returns its result, or throws `DeadlineExceeded` once `limit` has passed, whichever comes
/// first. A health check must answer on time even when the database hangs rather than refuses, and a query in
/// flight does not always stop when cancelled, so the caller is answered at the deadline and the work is
/// cancelled and left to finish on its own.
@discardableResult
public func withDeadline<Result: Sendable>(
    _ limit: Duration, _ work: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    let outcome = FirstOutcome<Result>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            outcome.install(continuation)
            // Unstructured on purpose: a task group would wait for `work` to end, which is what we must not do.
            let worker = Task {
                do {
                    outcome.finish(.success(try await work()))
                } catch {
                    outcome.finish(.failure(error))
                }
            }
            let timer = Task {
                try? await Task.sleep(for: limit)
                outcome.finish(.failure(DeadlineExceeded()))
                worker.cancel()
            }
            outcome.onFinish { timer.cancel() }
        }
    } onCancel: {
        outcome.finish(.failure(CancellationError()))
    }
}

/// Resumes a continuation with whichever outcome arrives first; later ones are dropped.
private final class FirstOutcome<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, any Error>?
        var early: Result<Value, any Error>?
        var finished = false
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<Value, any Error>) {
        let early = state.withLock { state -> Result<Value, any Error>? in
            if let early = state.early { return early }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let already = state.withLock { state -> Bool in
            if state.finished { return true }
            state.cleanup = cleanup
            return false
        }
        if already { cleanup() }
    }

    func finish(_ result: Result<Value, any Error>) {
        let (continuation, cleanup) = state.withLock { state -> (CheckedContinuation<Value, any Error>?, (@Sendable () -> Void)?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            let continuation = state.continuation
            if continuation == nil { state.early = result }
            state.continuation = nil
            defer { state.cleanup = nil }
            return (continuation, state.cleanup)
        }
        continuation?.resume(with: result)
        cleanup?()
    }
}
