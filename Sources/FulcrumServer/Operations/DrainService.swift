import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Drains in progress: a draining worker gets no new work, and is marked `drained` once a report received after the
/// drain began shows no request in flight (prefill queue and decode batch both empty), or when the drain's
/// deadline passes.
public final class DrainService: Service, Sendable {
    /// A drain as operators see it.
    public struct Drain: Codable, Hashable, Sendable {
        public var startedAt: Date
        public var deadline: Date
        /// Requests in flight in the newest report received since the drain began; nil until one arrives.
        public var inFlight: Int?
        public var done: Bool
        public var doneAt: Date?
        /// `idle` (no requests in flight) or `timeout`.
        public var doneBy: String?
        /// Who started it.
        public var by: String
    }

    private struct Record {
        var drain: Drain
        var began: ContinuousClock.Instant
        /// When it ends at the latest, on the service's clock (`drain.deadline` is the same moment as a date, for
        /// operators).
        var deadline: ContinuousClock.Instant
    }

    /// Assignments made this long before a report arrived are in it (the attention balancers' rule).
    static let settle: Duration = .milliseconds(250)
    public static let defaultTimeout: Duration = .seconds(600)

    private let fleet: Fleet
    private let store: any RegistryStore
    private let logger: Logger
    private let interval: Duration
    private let records = Mutex([String: Record]())
    private let clock: any ServiceClock
    private let leadership: Leadership

    init(
        fleet: Fleet, store: any RegistryStore, logger: Logger, interval: Duration = .milliseconds(500),
        clock: any ServiceClock = RealClock(), leadership: Leadership = .alone()
    ) {
        self.clock = clock
        self.leadership = leadership
        self.fleet = fleet
        self.store = store
        var logger = logger
        logger[metadataKey: "component"] = "drain"
        self.logger = logger
        self.interval = interval
    }

    func start(_ worker: String, timeout: Duration, by caller: String) {
        let now = Date()
        records.withLock {
            $0[worker] = Record(
                drain: Drain(
                    startedAt: now, deadline: now.addingTimeInterval(timeout.seconds), inFlight: nil, done: false,
                    doneAt: nil, doneBy: nil, by: caller),
                began: clock.now, deadline: clock.now + timeout)
        }
    }

    func cancel(_ worker: String) {
        records.withLock { $0[worker] = nil }
    }

    public func drain(of worker: String) -> Drain? {
        records.withLock { $0[worker]?.drain }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if self.leadership.isLeader { await self.check() }
                try? await self.clock.sleep(for: self.interval)
            }
        }
    }

    /// One pass: updates every drain's progress and finishes those that are done.
    func check() async {
        let now = Date()
        let instant = clock.now
        var finished: [(worker: String, reason: String)] = []
        let workers = fleet.workers(unit: nil, state: nil)
        let draining = workers.filter { $0.state == .draining }
        let drained = Set(workers.filter { $0.state == .drained }.map(\.id))
        records.withLock { records in
            // Drains whose worker moved on (uncordoned, cordoned, dead, gone) are over.
            let keep = Set(draining.map(\.id)).union(drained)
            records = records.filter { keep.contains($0.key) }
            for worker in draining {
                // A drain begun before a restart of Fulcrum has no record: it counts from now.
                var record =
                    records[worker.id]
                    ?? Record(
                        drain: Drain(
                            startedAt: now, deadline: now.addingTimeInterval(Self.defaultTimeout.seconds),
                            inFlight: nil, done: false, doneAt: nil, doneBy: nil, by: "fulcrum (after a restart)"),
                        began: instant, deadline: instant + Self.defaultTimeout)
                if let member = fleet.member(worker.id)?.member, let at = member.reportedAt,
                    at - record.began >= Self.settle, let report = member.report
                {
                    record.drain.inFlight = (report.prefill?.queuedRequests ?? 0) + (report.decode?.runningRequests ?? 0)
                }
                if !record.drain.done {
                    if record.drain.inFlight == 0 {
                        record.drain.done = true
                        record.drain.doneBy = "idle"
                        finished.append((worker.id, "drained: no requests in flight"))
                    } else if instant >= record.deadline {
                        record.drain.done = true
                        record.drain.doneBy = "timeout"
                        let left = record.drain.inFlight.map { "\($0) request(s)" } ?? "no report since the drain began"
                        finished.append((worker.id, "drain deadline passed with \(left) in flight"))
                    }
                    if record.drain.done { record.drain.doneAt = now }
                }
                records[worker.id] = record
            }
        }
        for (worker, reason) in finished {
            // An operator may have changed the worker meanwhile; their change stands.
            guard fleet.member(worker)?.member.worker.state == .draining else { continue }
            do {
                if try await store.setWorkerState(worker, to: .drained, reason: reason, at: now) != nil {
                    fleet.setState(worker, to: .drained)
                    logger.notice("worker drained", metadata: ["worker": "\(worker)", "reason": "\(reason)"])
                }
            } catch {
                // Tried again on the next pass.
                records.withLock { $0[worker]?.drain.done = false }
                logger.warning("cannot record a finished drain", metadata: ["worker": "\(worker)", "error": "\(error)"])
            }
        }
    }
}
