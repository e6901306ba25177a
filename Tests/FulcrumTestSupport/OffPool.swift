import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs CPU-bound test work on a thread of its own at the lowest priority and awaits its result. Why: Swift Testing
/// runs every suite at once on the cooperative pool, one thread per core, and many suites wait on timers and assert
/// how long something took (a deadline, a liveness timeout). Seconds of computation on that pool, or beside it at
/// equal priority, on a 2-core machine delay those timers past their bounds. Work here takes only the CPU the rest
/// leaves. Compute here, assert on the pool (`#expect` needs the test's task).
public func offPool<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            #if canImport(Glibc)
            // On Linux PRIO_PROCESS with who = 0 sets the calling thread's nice value only.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            #endif
            continuation.resume(with: Swift.Result { try work() })
        }
        thread.start()
    }
}
