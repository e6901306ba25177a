import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Marks workers dead when they fall silent for `timeout`, and active again when they report, deciding in memory
/// (so routing reacts at once) and recording every change, with its reason, in the store. Changes the store could
/// not take (database down) are retried on the next sweep, in order.
public final class LivenessService: Service, Sendable {
    let fleet: Fleet
    let store: any RegistryStore
    let timeout: Duration
    let interval: Duration
    let logger: Logger
    let clock: any ServiceClock
    /// A standby decides nothing: it hears no reports, and every worker would look silent.
    let leadership: Leadership
    private let pending = PendingTransitions()

    public init(
        fleet: Fleet, store: any RegistryStore, timeout: Duration, interval: Duration, logger: Logger,
        clock: any ServiceClock = RealClock(), leadership: Leadership = .alone()
    ) {
        self.clock = clock
        self.leadership = leadership
        self.fleet = fleet
        self.store = store
        self.timeout = timeout
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown { try await self.sweepLoop() }
    }

    private func sweepLoop() async throws {
        while !Task.isCancelled {
            try await clock.sleep(for: interval)
            if leadership.isLeader { await sweep() }
        }
    }

    /// One pass: decide, then record. Public for tests.
    public func sweep() async {
        let epoch = leadership.fence.epoch
        pending.keep(epoch: epoch)
        for var transition in fleet.sweep(timeout: timeout) {
            transition.fenceEpoch = epoch
            logger.notice(
                "worker state changed",
                metadata: ["worker": "\(transition.worker)", "to": "\(transition.to)", "reason": "\(transition.reason)"])
            pending.append(transition, at: Date())
        }
        while let (transition, at) = pending.first() {
            // The worker registered again since: the registration recorded its state, this decision is void.
            guard fleet.isCurrent(transition) else {
                pending.removeFirst()
                continue
            }
            do {
                try await withDeadline(.seconds(5)) { [store] in
                    try await store.setWorkerState(transition.worker, to: transition.to, reason: transition.reason, at: at)
                }
                pending.removeFirst()
            } catch let error as NotLeader {
                // Another replica leads now: what this one decided is not its to record.
                logger.notice("worker state change dropped", metadata: ["worker": "\(transition.worker)", "reason": "\(error)"])
                pending.clear()
                return
            } catch let error as RegistryError {
                // Refused for good (deleted meanwhile, GPU taken): retrying would block every later change.
                logger.warning(
                    "worker state change not recorded", metadata: ["worker": "\(transition.worker)", "reason": "\(error)"])
                pending.removeFirst()
            } catch {
                logger.warning(
                    "cannot record worker state change yet; will retry",
                    metadata: ["worker": "\(transition.worker)", "error": "\(error)"])
                return
            }
        }
    }
}

/// Liveness changes waiting to be recorded, oldest first.
private final class PendingTransitions: Sendable {
    private let items = Mutex<[(Fleet.Transition, Date)]>([])

    func append(_ transition: Fleet.Transition, at date: Date) {
        items.withLock { $0.append((transition, date)) }
    }

    func first() -> (Fleet.Transition, Date)? {
        items.withLock { $0.first }
    }

    func removeFirst() {
        items.withLock { _ = $0.removeFirst() }
    }

    /// Keeps only changes decided under `epoch`: one decided under an earlier lease is void once the state has
    /// been loaded again.
    func keep(epoch: Int64) {
        items.withLock { items in items.removeAll { $0.0.fenceEpoch != epoch } }
    }

    func clear() {
        items.withLock { $0.removeAll() }
    }
}
