import FulcrumCore
import FulcrumStore
import Foundation
import Synchronization

/// The in-memory view of every unit and worker that the hot paths (telemetry, placement polls, assignment) read
/// and write, so that none of them waits on PostgreSQL. The store stays the durable record: registry writes go to
/// the store first and then here; liveness changes happen here first and are persisted behind.
public final class Fleet: Sendable {
    public struct Member: Sendable {
        public var worker: Worker
        /// The highest telemetry `seq` applied since the worker last registered.
        public var lastSeq: Int?
        public var report: TelemetryReport?
        /// When the last report was applied; nil when none has arrived since Fulcrum started.
        public var reportedAt: ContinuousClock.Instant?
        /// The last sign of life, a report or a registration; nil after a restart until the worker speaks.
        public var contactAt: ContinuousClock.Instant?
        /// When a report last went to the history writer (downsampling).
        public var sampledAt: ContinuousClock.Instant?
        public var duplicates = 0
        public var ackedVersion: Int?
        /// Rises with every registration, so a liveness decision taken before it is never recorded after it.
        public var epoch = 0
    }

    public enum IngestOutcome: Equatable, Sendable {
        /// Applied; `sample` says whether this report is due for the downsampled history.
        case applied(sample: Bool, state: WorkerState)
        /// A retried or reordered report: nothing changed.
        case duplicate(lastSeq: Int, state: WorkerState)
    }

    /// A liveness decision made in memory, to be recorded in the store.
    public struct Transition: Hashable, Sendable {
        public var worker: String
        public var to: WorkerState
        public var reason: String
        public var epoch: Int
        /// The leader's lease epoch it was decided under (0 on a single process without a lease).
        public var fenceEpoch: Int64 = 0
    }

    private struct State {
        var units: [String: DeploymentUnit] = [:]
        var members: [String: Member] = [:]
        /// When the registry was loaded from the store: workers loaded have no contact time, and their silence
        /// counts from here.
        var loadedAt = ContinuousClock.now
    }

    private let state = Mutex(State())
    let clock: any ServiceClock
    public init(clock: any ServiceClock = RealClock()) {
        self.clock = clock
        state.withLock { $0.loadedAt = clock.now }
    }

    // MARK: Registry mirror

    /// Replaces the contents with what the store holds (at start-up): every worker of unknown age.
    public func load(units: [DeploymentUnit], workers: [Worker], acks: [PlacementAck]) {
        let acked = Dictionary(acks.map { ($0.worker, $0.version) }, uniquingKeysWith: max)
        let now = clock.now
        state.withLock { state in
            // Their silence counts from the load, not from the process's start: start-up may have waited a long
            // time for the database, while the API refused every report.
            state.loadedAt = now
            state.units = Dictionary(uniqueKeysWithValues: units.map { ($0.id, $0) })
            state.members = Dictionary(
                uniqueKeysWithValues: workers.map { ($0.id, Member(worker: $0, ackedVersion: acked[$0.id])) })
        }
    }

    public func put(unit: DeploymentUnit) {
        state.withLock { $0.units[unit.id] = unit }
    }

    public func remove(unit id: String) {
        state.withLock { state in
            state.units[id] = nil
            state.members = state.members.filter { $0.value.worker.unit != id }
        }
    }

    /// Records a (re-)registration. A new registration is a new worker session: its `seq` may start again.
    public func registered(_ worker: Worker) {
        let now = clock.now
        state.withLock { state in
            var member = state.members[worker.id] ?? Member(worker: worker)
            member.worker = worker
            member.lastSeq = nil
            member.contactAt = now
            member.epoch += 1
            state.members[worker.id] = member
        }
    }

    public func setState(_ id: String, to workerState: WorkerState) {
        state.withLock { $0.members[id]?.worker.state = workerState }
    }

    // MARK: Reads

    public func unit(_ id: String) -> DeploymentUnit? {
        state.withLock { $0.units[id] }
    }

    public func member(_ id: String) -> (member: Member, unit: DeploymentUnit)? {
        state.withLock { state in
            guard let member = state.members[id], let unit = state.units[member.worker.unit] else { return nil }
            return (member, unit)
        }
    }

    public func units() -> [DeploymentUnit] {
        state.withLock { $0.units.values.sorted { $0.id < $1.id } }
    }

    /// Workers ordered by unit, then rank; both filters optional.
    public func workers(unit: String?, state wanted: WorkerState?) -> [Worker] {
        state.withLock { state in
            state.members.values.map(\.worker)
                .filter { (unit == nil || $0.unit == unit) && (wanted == nil || $0.state == wanted) }
                .sorted { ($0.unit, $0.rank, $0.id) < ($1.unit, $1.rank, $1.id) }
        }
    }

    public func members(unit: String) -> [Member] {
        state.withLock { state in
            state.members.values.filter { $0.worker.unit == unit }.sorted { $0.worker.rank < $1.worker.rank }
        }
    }

    /// Every rank of a unit as the balancers see it, ordered by rank.
    public func loads(unit: String, staleAfter: Duration, policy: StalenessPolicy) -> [RankLoad] {
        members(unit: unit).map { member in
            let (age, stale) = freshness(of: member, staleAfter: staleAfter)
            return RankLoad(
                rank: member.worker.rank, worker: member.worker.id, state: member.worker.state,
                eligible: RankLoad.eligible(
                    state: member.worker.state, hasReport: member.report != nil, stale: stale, policy: policy),
                stale: stale, ageSeconds: age?.seconds, prefill: member.report?.prefill,
                decode: member.report?.decode)
        }
    }

    /// A rank that may take new work: what the balancers need of its member, copied without the rest.
    public struct Candidate: Sendable {
        public var worker: Worker
        public var epoch: Int
        public var prefill: PrefillLoad?
        public var decode: DecodeLoad?
        public var sentAt: Date?
        /// The last report's age.
        public var age: Duration?
    }

    /// The eligible ranks of every unit of `role` (or of one unit), units by id and ranks by rank; units with none
    /// are left out. One pass under the lock: the assignment path calls this for every batch.
    public func eligible(
        role: Role, units only: Set<String>?, staleAfter: Duration, policy: StalenessPolicy,
        unitPolicies: [String: StalenessPolicy] = [:]
    ) -> [(unit: DeploymentUnit, ranks: [Candidate])] {
        let now = clock.now
        return state.withLock { state in
            var byUnit: [String: [Candidate]] = [:]
            for member in state.members.values {
                guard only?.contains(member.worker.unit) ?? true, let unit = state.units[member.worker.unit],
                    unit.role == role
                else { continue }
                let age = member.reportedAt.map { now - $0 }
                let stale = age.map { $0 > staleAfter } ?? true
                guard
                    RankLoad.eligible(
                        state: member.worker.state, hasReport: member.report != nil, stale: stale,
                        policy: unitPolicies[unit.id] ?? policy)
                else { continue }
                byUnit[unit.id, default: []].append(
                    Candidate(
                        worker: member.worker, epoch: member.epoch, prefill: member.report?.prefill,
                        decode: member.report?.decode, sentAt: member.report?.sentAt, age: age))
            }
            return byUnit.keys.sorted().compactMap { id in
                state.units[id].map { unit in (unit, byUnit[id, default: []].sorted { $0.worker.rank < $1.worker.rank }) }
            }
        }
    }

    /// Per unit, the ranks held by a live worker and the ranks whose worker is dead; one pass, nothing copied.
    public func rankLiveness() -> [String: (live: Set<Int>, dead: Set<Int>)] {
        state.withLock { state in
            var result: [String: (live: Set<Int>, dead: Set<Int>)] = [:]
            for member in state.members.values {
                if member.worker.state.isLive {
                    result[member.worker.unit, default: ([], [])].live.insert(member.worker.rank)
                } else {
                    result[member.worker.unit, default: ([], [])].dead.insert(member.worker.rank)
                }
            }
            return result
        }
    }

    /// Whether a liveness decision still describes the worker: it has not registered since.
    public func isCurrent(_ transition: Transition) -> Bool {
        state.withLock { $0.members[transition.worker]?.epoch == transition.epoch }
    }

    /// How old a member's figures are (nil: none since Fulcrum started) and whether that makes them stale.
    public func freshness(of member: Member, staleAfter: Duration) -> (age: Duration?, stale: Bool) {
        let age = member.reportedAt.map { clock.now - $0 }
        return (age, age.map { $0 > staleAfter } ?? true)
    }

    // MARK: Hot path

    /// Applies a validated report unless its `seq` is not newer than the last one applied.
    public func ingest(_ report: TelemetryReport, from id: String, sampleEvery interval: Duration) throws(RegistryError)
        -> IngestOutcome
    {
        let now = clock.now
        return try state.withLock { (state: inout State) throws(RegistryError) -> IngestOutcome in
            guard var member = state.members[id] else { throw .workerNotFound(id) }
            if let last = member.lastSeq, report.seq <= last {
                member.duplicates += 1
                state.members[id] = member
                return .duplicate(lastSeq: last, state: member.worker.state)
            }
            member.lastSeq = report.seq
            member.report = report
            member.worker.lastSeen = Date()
            member.reportedAt = now
            member.contactAt = now
            let sample = member.sampledAt.map { now - $0 >= interval } ?? true
            if sample { member.sampledAt = now }
            state.members[id] = member
            return .applied(sample: sample, state: member.worker.state)
        }
    }

    /// Records that a worker applied `version`; versions only move forward.
    public func acknowledge(_ id: String, version: Int) {
        state.withLock { state in
            guard let previous = state.members[id] else { return }
            state.members[id]?.ackedVersion = max(version, previous.ackedVersion ?? version)
        }
    }

    // MARK: Liveness

    /// Marks silent workers dead and dead workers that reported again active, in memory, and returns what changed
    /// so that it can be recorded. A revived worker whose GPU another live worker took stays dead.
    public func sweep(timeout: Duration) -> [Transition] {
        let now = clock.now
        return state.withLock { state in
            var transitions: [Transition] = []
            for id in state.members.keys.sorted() {
                guard let member = state.members[id] else { continue }
                let silentFor = now - (member.contactAt ?? state.loadedAt)
                if member.worker.state.isLive, silentFor > timeout {
                    let reason =
                        member.contactAt == nil
                        ? "no telemetry since Fulcrum started \(Self.seconds(silentFor)) ago"
                        : "no telemetry for \(Self.seconds(silentFor))"
                    state.members[id]?.worker.state = .dead
                    transitions.append(Transition(worker: id, to: .dead, reason: reason, epoch: member.epoch))
                } else if member.worker.state == .dead, let reported = member.reportedAt, now - reported <= timeout {
                    let w = member.worker
                    let taken = state.members.values.contains {
                        $0.worker.id != id && $0.worker.state.isLive && $0.worker.unit == w.unit
                            && $0.worker.node == w.node && $0.worker.gpu == w.gpu
                    }
                    guard !taken else { continue }
                    state.members[id]?.worker.state = .active
                    transitions.append(
                        Transition(worker: id, to: .active, reason: "reported again", epoch: member.epoch))
                }
            }
            return transitions
        }
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f s", duration.seconds)
    }
}
