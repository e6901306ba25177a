import FulcrumStore
import Synchronization
import Testing

@Suite("Deadlines")
struct DeadlineTests {
    @Test func fastWorkReturnsItsResult() async throws {
        #expect(try await withDeadline(.seconds(5)) { 42 } == 42)
        await #expect(throws: CancellationError.self) {
            try await withDeadline(.seconds(5)) { throw CancellationError() }
        }
    }

    @Test func workThatIgnoresCancellationIsAbandonedAtTheDeadline() async throws {
        let stuck = Stuck()
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200)) {
                // Like a query stuck on a dead socket: does not notice cancellation, and ends only when released
                // below. Had the deadline waited for it, this call would never return.
                await withCheckedContinuation { stuck.hold($0) }
                return 1
            }
        }
        // ~0.2 s on an idle machine; the bound only says "not waited for", and leaves room for a loaded one.
        #expect(ContinuousClock.now - started < .seconds(10))
        stuck.release()
    }

    /// Work that ends only when the test says so.
    final class Stuck: Sendable {
        private enum State {
            case idle
            case holding(CheckedContinuation<Void, Never>)
            case released
        }
        private let state = Mutex(State.idle)

        func hold(_ continuation: CheckedContinuation<Void, Never>) {
            let resumeNow = state.withLock { state -> Bool in
                if case .released = state { return true }
                state = .holding(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }

        func release() {
            let held = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state = .released }
                if case .holding(let continuation) = state { return continuation }
                return nil
            }
            held?.resume()
        }
    }
}
