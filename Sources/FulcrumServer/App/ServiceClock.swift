import Foundation
import FulcrumCore
import Synchronization

/// The time the control plane reads and its loops sleep on. Production runs on the real monotonic clock; tests run on
/// a `ManualClock` and advance it, instead of sleeping and hoping a loop has run by then.
public protocol ServiceClock: Sendable {
    var now: ContinuousClock.Instant { get }
    /// The same moment as a date, for rules that compare with dates (assignment and report times).
    var date: Date { get }
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

extension ServiceClock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now + duration)
    }
}

/// The real clock: `ContinuousClock`.
public struct RealClock: ServiceClock {
    public init() {}
    public var now: ContinuousClock.Instant { ContinuousClock.now }
    public var date: Date { Date() }
    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }
}

/// A clock that moves only when told to (`advance(by:)`), waking every sleeper whose deadline has come, in order.
/// Its instants are real `ContinuousClock` instants offset from when it was made, so code that stores instants
/// works unchanged.
public final class ManualClock: ServiceClock {
    private struct Sleeper {
        var id: Int
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var offset = Duration.zero
        var sleepers: [Sleeper] = []
        var nextID = 0
        /// Sleeps cancelled before they were registered.
        var cancelled: Set<Int> = []
    }

    private let origin = ContinuousClock.now
    private let originDate = Date()
    private let state = Mutex(State())

    public init() {}

    public var now: ContinuousClock.Instant { state.withLock { origin + $0.offset } }
    public var date: Date { originDate.addingTimeInterval(state.withLock { $0.offset }.seconds) }

    /// Sleepers waiting now: a test can wait for a loop to reach its sleep before advancing.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case wait, resume, cancel }
                let action = state.withLock { state -> Now in
                    if state.cancelled.remove(id) != nil { return .cancel }
                    if deadline <= origin + state.offset { return .resume }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return .wait
                }
                switch action {
                case .wait: break
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes the sleepers now due, earliest first.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.offset += duration
            let now = origin + state.offset
            let due = state.sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}
