import Dispatch
import FulcrumStore
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
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200)) {
                // Like a query stuck on a dead socket: does not notice cancellation.
                await withCheckedContinuation { continuation in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 3) { continuation.resume() }
                }
                return 1
            }
        }
        // Abandoned, not waited for: well before the work's 3 s (on an idle machine ~0.2 s; a full suite on two
        // cores has starved the deadline's timer past 2 s).
        #expect(ContinuousClock.now - started < .milliseconds(2_700))
    }
}
