import DequeModule
import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Persists telemetry behind the hot path: downsampled samples, per-unit expert-load windows, placement acks,
/// last-seen times and the attention balancers' assignment ledger, in batches. Ingest only appends to memory; when PostgreSQL is down the buffer fills up to its
/// bound, then the oldest samples are dropped and counted, and writing resumes by itself when the database is back.
public final class TelemetryWriter: Service, Sendable {
    public struct Settings: Sendable {
        /// How often buffered rows are written.
        public var flushInterval: Duration = .seconds(1)
        /// Samples and acks held while the database is unreachable; beyond it the oldest are dropped.
        public var capacity = 100_000
        /// Ledger rows (assignments and finishes) held while the database is unreachable or slow.
        public var ledgerCapacity = 1_000_000
        /// Rows per transaction, so one flush after an outage does not become one giant statement.
        public var batchLimit = 20_000
        /// How long history is kept; older rows are deleted every `pruneInterval`.
        public var retention: Duration = .seconds(7 * 24 * 3_600)
        public var pruneInterval: Duration = .seconds(600)
        /// How often `workers.last_seen` is brought up to date.
        public var lastSeenInterval: Duration = .seconds(10)
        /// A write unanswered this long counts as failed (and again each time as long again passes), while it goes
        /// on waiting: a database that went away leaves the pool waiting for a connection for about a minute, and
        /// on-call must see the failure at once, not then.
        public var unansweredAfter: Duration = .seconds(2)

        public init() {}
    }

    /// Figures for metrics and tests.
    public struct Stats: Hashable, Sendable {
        public var buffered = 0
        public var written = 0
        public var dropped = 0
        /// Ledger rows buffered, and dropped because the buffer was full.
        public var ledgerBuffered = 0
        public var ledgerDropped = 0
        public var failedFlushes = 0
        /// Writes failed in a row since the last that landed: 0 when the database is taking them.
        public var consecutiveFailures = 0
        public var lastError: String?
        /// When a batch last reached the database.
        public var lastWrittenAt: Date?
        /// When the write in flight began; nil between writes. A database that hangs rather than refuses (its pool
        /// waiting for a connection) shows here at once, where no write has failed yet.
        public var writingSince: Date?
        /// When the oldest row not yet in the database was received (buffered or being written); nil when none.
        public var oldestUnwrittenAt: Date?
    }

    private struct State {
        var samples = Deque<TelemetrySample>()
        var acks = Deque<PlacementAck>()
        var lastSeen: [String: Date] = [:]
        var lastSeenWritten = ContinuousClock.now
        var closed = Deque<ExpertLoadWindow>()
        var assignments = Deque<AssignmentRecord>()
        var finishes = Deque<RequestFinish>()
        /// Ledger rows being written now: still answered by `pending` until the write has landed.
        var writing: (assignments: [AssignmentRecord], finishes: [RequestFinish]) = ([], [])
        /// The oldest row of the batch being written.
        var writingOldest: Date?
        var stats = Stats()

        var bufferedCount: Int { samples.count + acks.count }
    }

    private let state = Mutex(State())
    let store: any ProtocolHistoryStore
    let settings: Settings
    let logger: Logger
    let clock: any ServiceClock
    /// Where expert-load windows come from: the estimator sums them as it folds the reports.
    let windows: ExpertLoadEstimator?

    public init(
        store: any ProtocolHistoryStore, settings: Settings = Settings(), windows: ExpertLoadEstimator? = nil, logger: Logger,
        clock: any ServiceClock = RealClock()
    ) {
        self.clock = clock
        self.store = store
        self.settings = settings
        self.windows = windows
        self.logger = logger
    }

    public var stats: Stats {
        state.withLock { state in
            var stats = state.stats
            stats.buffered = state.bufferedCount
            stats.ledgerBuffered = state.assignments.count + state.finishes.count
            stats.oldestUnwrittenAt = [
                state.writingOldest, state.samples.first?.receivedAt, state.acks.first?.at, state.closed.first?.windowEnd,
                state.assignments.first?.assignedAt, state.finishes.first?.at,
            ].compactMap { $0 }.min()
            return stats
        }
    }

    // MARK: Intake (hot path: memory only)

    public func record(sample: TelemetrySample?, contact worker: String, at date: Date) {
        state.withLock { state in
            state.lastSeen[worker] = date
            if let sample {
                state.samples.append(sample)
                Self.trim(&state, capacity: settings.capacity)
            }
        }
    }

    public func record(ack: PlacementAck) {
        state.withLock { state in
            state.acks.append(ack)
            state.lastSeen[ack.worker] = ack.at
            Self.trim(&state, capacity: settings.capacity)
        }
    }

    /// Queues ledger rows: the assignments of one batch, or finishes.
    public func record(assignments: [AssignmentRecord] = [], finishes: [RequestFinish] = []) {
        guard !assignments.isEmpty || !finishes.isEmpty else { return }
        state.withLock { state in
            state.assignments.append(contentsOf: assignments)
            state.finishes.append(contentsOf: finishes)
            Self.trimLedger(&state, capacity: settings.ledgerCapacity)
        }
    }

    /// Ledger rows of a request not written yet, with any finish not written yet applied: what `GET
    /// /v1/requests/{id}` adds to the store's answer during the second before a flush.
    public func pending(requestID: String) -> (assignments: [AssignmentRecord], finishes: [RequestFinish]) {
        state.withLock { state in
            (
                state.writing.assignments.filter { $0.requestID == requestID }
                    + state.assignments.filter { $0.requestID == requestID },
                state.writing.finishes.filter { $0.requestID == requestID }
                    + state.finishes.filter { $0.requestID == requestID }
            )
        }
    }

    /// Queues closed expert-load windows for the store. Windows are large (layers x slots); a few hundred cover any
    /// outage worth surviving, and older ones are dropped and counted.
    private static func enqueue(_ windows: [ExpertLoadWindow], in state: inout State) {
        state.closed.append(contentsOf: windows)
        while state.closed.count > maxClosedWindows {
            state.closed.removeFirst()
            state.stats.dropped += 1
        }
    }

    static let maxClosedWindows = 512

    /// Drops the oldest rows beyond capacity, samples first: they are the most plentiful and least valuable.
    private static func trim(_ state: inout State, capacity: Int) {
        while state.bufferedCount > capacity {
            if !state.samples.isEmpty {
                state.samples.removeFirst()
            } else {
                state.acks.removeFirst()
            }
            state.stats.dropped += 1
        }
    }

    /// Drops the oldest ledger rows beyond capacity, finishes first (an assignment matters more than its end).
    private static func trimLedger(_ state: inout State, capacity: Int) {
        while state.assignments.count + state.finishes.count > capacity {
            if !state.finishes.isEmpty {
                state.finishes.removeFirst()
            } else {
                state.assignments.removeFirst()
            }
            state.stats.ledgerDropped += 1
        }
    }

    // MARK: Writing

    public func run() async throws {
        try? await cancelWhenGracefulShutdown { try await self.writeLoop() }
        // Shutting down: close every open window and write what is buffered, once, without waiting long for a
        // database that is down.
        _ = try? await withDeadline(.seconds(5)) { await self.flush(closingOlderThan: .zero) }
    }

    private func writeLoop() async throws {
        var lastPrune = clock.now
        while !Task.isCancelled {
            try await clock.sleep(for: settings.flushInterval)
            await flush(closingOlderThan: windows?.windowLength ?? .zero)
            if clock.now - lastPrune >= settings.pruneInterval {
                lastPrune = clock.now
                await prune()
            }
        }
    }

    /// Writes what is buffered, in batches, until it is empty or a write fails (then it stays buffered).
    public func flush(closingOlderThan age: Duration = .zero) async {
        if let closed = windows?.closedWindows(olderThan: age), !closed.isEmpty {
            state.withLock { Self.enqueue(closed, in: &$0) }
        }
        while let batch = takeBatch(everything: age == .zero) {
            do {
                state.withLock { $0.stats.writingSince = Date() }
                defer { state.withLock { $0.stats.writingSince = nil } }
                try await appendWatched(batch)
                let rows = batch.historyRows + batch.ledgerRows
                let recovered = state.withLock { state -> Bool in
                    state.writing = ([], [])
                    state.writingOldest = nil
                    state.stats.written += rows
                    state.stats.consecutiveFailures = 0
                    state.stats.lastWrittenAt = Date()
                    defer { state.stats.lastError = nil }
                    return state.stats.lastError != nil
                }
                if recovered { logger.notice("telemetry writer: database reachable again; writing resumed") }
            } catch let error as NotLeader {
                // Rows taken in under a lease this replica has lost: the new leader rebuilds what it needs from
                // the workers' next reports. Writing them later would be refused again.
                state.withLock { state in
                    state.writing = ([], [])
                    state.writingOldest = nil
                    state.stats.dropped += batch.historyRows
                    state.stats.ledgerDropped += batch.ledgerRows
                }
                logger.warning(
                    "telemetry writer: dropped rows buffered under a lost lease",
                    metadata: ["rows": "\(batch.historyRows + batch.ledgerRows)", "reason": "\(error.reason)"])
            } catch {
                giveBack(batch)
                if countFailure("\(error)") {
                    logger.warning(
                        "telemetry writer: cannot write, buffering in memory",
                        metadata: ["error": "\(error)", "capacity": "\(settings.capacity)"])
                }
                return
            }
        }
    }

    /// Appends the batch, counting it as failed for every `unansweredAfter` it goes unanswered. The write is not
    /// abandoned: a batch given back while its transaction might still commit would be written twice.
    private func appendWatched(_ batch: TelemetryBatch) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { [store] in
                try await store.append(batch)
                return true
            }
            // The watchdog never throws: cancelled (at shutdown), it ends quietly and the outcome is the append's
            // alone. Had it thrown first, the batch would be given back while its transaction might still commit.
            group.addTask { [self] in
                var waited = Duration.zero
                while (try? await clock.sleep(for: settings.unansweredAfter)) != nil {
                    waited += settings.unansweredAfter
                    countUnanswered(after: waited)
                }
                return false
            }
            defer { group.cancelAll() }
            while let appended = try await group.next() {
                if appended { return }
            }
        }
    }

    /// Counts a failed (or unanswered) write; true when it is the first since writes last landed.
    private func countFailure(_ message: String) -> Bool {
        state.withLock { state -> Bool in
            state.stats.failedFlushes += 1
            state.stats.consecutiveFailures += 1
            defer { state.stats.lastError = message }
            return state.stats.lastError == nil
        }
    }

    private func countUnanswered(after waited: Duration) {
        if countFailure("the database has not answered a write for \(waited); still waiting") {
            logger.warning(
                "telemetry writer: the database is not answering, buffering in memory",
                metadata: ["waited": "\(waited)", "capacity": "\(settings.capacity)"])
        }
    }

    private func takeBatch(everything: Bool) -> TelemetryBatch? {
        state.withLock { state in
            var batch = TelemetryBatch()
            let limit = settings.batchLimit
            batch.samples = Array(state.samples.prefix(limit))
            state.samples.removeFirst(batch.samples.count)
            batch.windows = Array(state.closed.prefix(16))
            state.closed.removeFirst(batch.windows.count)
            batch.acks = Array(state.acks.prefix(limit))
            state.acks.removeFirst(batch.acks.count)
            batch.assignments = Array(state.assignments.prefix(limit))
            state.assignments.removeFirst(batch.assignments.count)
            // A finish goes out only once every assignment queued before it has: its UPDATE must find the row.
            if state.assignments.isEmpty {
                batch.finishes = Array(state.finishes.prefix(limit))
                state.finishes.removeFirst(batch.finishes.count)
            }
            state.writing = (batch.assignments, batch.finishes)
            state.writingOldest = [
                batch.samples.first?.receivedAt, batch.acks.first?.at, batch.windows.first?.windowEnd,
                batch.assignments.first?.assignedAt, batch.finishes.first?.at,
            ].compactMap { $0 }.min()
            // last_seen is for operators; rewriting every worker row every second would only bloat the table.
            if everything || clock.now - state.lastSeenWritten >= settings.lastSeenInterval {
                batch.lastSeen = state.lastSeen
                state.lastSeen = [:]
                state.lastSeenWritten = clock.now
            }
            return batch.isEmpty ? nil : batch
        }
    }

    /// Puts a batch that could not be written back in front, newer contact times winning.
    private func giveBack(_ batch: TelemetryBatch) {
        state.withLock { state in
            state.samples.prepend(contentsOf: batch.samples)
            state.closed.prepend(contentsOf: batch.windows)
            state.acks.prepend(contentsOf: batch.acks)
            state.assignments.prepend(contentsOf: batch.assignments)
            state.finishes.prepend(contentsOf: batch.finishes)
            state.writing = ([], [])
            state.writingOldest = nil
            state.lastSeen.merge(batch.lastSeen) { newer, _ in newer }
            Self.trim(&state, capacity: settings.capacity)
            Self.trimLedger(&state, capacity: settings.ledgerCapacity)
        }
    }

    private func prune() async {
        do {
            let removed = try await store.pruneTelemetry(before: Date().addingTimeInterval(-settings.retention.seconds))
            if removed > 0 { logger.info("telemetry history pruned", metadata: ["rows": "\(removed)"]) }
        } catch is NotLeader {
            // A standby: the leader prunes.
        } catch {
            logger.warning("telemetry writer: pruning failed", metadata: ["error": "\(error)"])
        }
    }
}
