import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Whether the control plane has loaded its state, and if not, why not. Until it has, `/healthz` answers (the
/// process is alive), `/readyz` says what it is waiting for, and `/v1` answers 503 `starting`: serving the API
/// from an empty registry would route nothing and refuse every known worker.
public final class StartupGate: Sendable {
    public enum State: Sendable, Equatable {
        case starting(reason: String)
        case started
    }

    private let state = Mutex(State.starting(reason: "loading the registry"))
    /// Read by every `/v1` request: once open the gate stays open, and an atomic load costs less than the lock.
    private let open = Atomic<Bool>(false)
    /// Those waiting for the gate to open, by id (so that a cancelled one can leave).
    private let waiters = Mutex((next: 0, waiting: [Int: CheckedContinuation<Void, Never>]()))

    public init() {}

    public var current: State { open.load(ordering: .acquiring) ? .started : state.withLock { $0 } }
    public var isStarted: Bool { open.load(ordering: .acquiring) }

    func waiting(_ reason: String) { state.withLock { $0 = .starting(reason: reason) } }
    func opened() {
        state.withLock { $0 = .started }
        let waiting = waiters.withLock { waiters in
            open.store(true, ordering: .releasing)
            defer { waiters.waiting = [:] }
            return Array(waiters.waiting.values)
        }
        for continuation in waiting { continuation.resume() }
    }

    /// Returns once the gate has opened, or at once when the caller is cancelled.
    func started() async {
        let id = waiters.withLock { waiters in
            waiters.next += 1
            return waiters.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = waiters.withLock { waiters -> Bool in
                    if open.load(ordering: .acquiring) || Task.isCancelled { return true }
                    waiters.waiting[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            waiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Brings the schema up to date and loads the registry, retrying while the database cannot be reached, with the
/// HTTP server already listening. Why not before the server starts: a database that is down at start-up would
/// leave no `/healthz` for the orchestrator (which then kills and restarts the process, which cannot help) and a
/// SIGTERM that waits for the connection pool to give up (about a minute). Here SIGTERM cancels the attempt.
///
/// A failure that retrying cannot fix (an applied migration was edited, a stored row is corrupt) still stops the
/// process with the error, as before.
struct StartupService: Service {
    let gate: StartupGate
    /// Checks the database answers at all, quickly, so that a wait for a connection does not hide the reason.
    let probe: @Sendable () async throws -> Void
    /// Migrations and the registry's load: the whole start-up, run again from the top after an outage.
    let start: @Sendable () async throws -> Void
    let logger: Logger
    var probeLimit: Duration = .seconds(2)
    var retryDelays: (first: Duration, last: Duration) = (.milliseconds(250), .seconds(2))

    func run() async throws {
        var delay = retryDelays.first
        var attempts = 0
        let since = ContinuousClock.now
        gate.waiting("connecting to the store, bringing the schema up to date and loading the registry")
        while !Task.isShuttingDownGracefully {
            attempts += 1
            do {
                try await cancelWhenGracefulShutdown {
                    try await withDeadline(probeLimit) { try await probe() }
                    try await start()
                }
                gate.opened()
                if attempts > 1 {
                    logger.notice(
                        "started after waiting for the database",
                        metadata: ["attempts": "\(attempts)", "waited": "\(ContinuousClock.now - since)"])
                }
                // Hummingbird's service group ends everything when one service returns: stay until shutdown.
                try? await gracefulShutdown()
                return
            } catch is CancellationError where Task.isShuttingDownGracefully || Task.isCancelled {
                return
            } catch where error is DeadlineExceeded || error.isUnavailability {
                let reason =
                    error is DeadlineExceeded
                    ? "the database did not answer within \(probeLimit)" : "the database is unavailable: \(error.postgresSummary)"
                gate.waiting("\(reason); retrying (attempt \(attempts))")
                if attempts == 1 || attempts.isMultiple(of: 10) {
                    logger.warning(
                        "cannot start yet: the database is unreachable; retrying, /readyz says why",
                        metadata: ["reason": "\(reason)", "attempts": "\(attempts)"])
                }
                try? await cancelWhenGracefulShutdown { [delay] in try await Task.sleep(for: delay) }
                delay = min(delay * 2, retryDelays.last)
            } catch {
                logger.critical("cannot start", metadata: ["error": "\(error)"])
                throw error
            }
        }
    }
}
