import FulcrumCore
import FulcrumStore
import Foundation
import Logging
import NIOCore

/// Placement delivery: what each GPU must run, long polls, acknowledgements and publishing new versions.
public struct PlacementService: Sendable {
    let fleet: Fleet
    let hub: PlacementHub
    let writer: TelemetryWriter
    let registry: RegistryService
    let store: any PlacementStore
    let deadline: StoreDeadline
    let logger: Logger
    let events: EventCounters
    /// The units' policies: the expert size migration plans count bytes with.
    var controls: UnitControlsBook? = nil

    func expertBytes(_ unit: String) -> Int {
        controls?.effective(unit).expertBytes ?? EffectivePolicy.defaultExpertBytes
    }

    /// `GET /v1/workers/{id}/placement`: this GPU's slots in the unit's current placement, and its directives.
    public struct WorkerPlacement: Sendable {
        public var worker: String
        public var unit: String
        public var rank: Int
        /// The directive: `active` takes new work; `cordoned` and `draining` take none; `dead` must re-register.
        public var state: WorkerState
        public var version: Int
        public var slotsPerGpu: Int
        /// `[layer][localSlot]` → logical expert id.
        public var slots: [[Int]]
        /// Ranks of the unit that serve nothing in this version: route no tokens to their slots.
        public var excludedRanks: [Int]
        /// This rank's part of the migration plan from the version before: what it receives and what it sends, in
        /// rounds; nil when this process did not publish the version (after a restart: see the plan route).
        public var transfers: [MigrationPlan.Transfer]?
        public var rounds: Int?

        /// Written by hand: every parked poll of a unit gets one at the same moment. Ids are `[A-Za-z0-9._-]`,
        /// so nothing needs escaping.
        var json: ByteBuffer {
            var text = #"{"excludedRanks":[\#(excludedRanks.map(String.init).joined(separator: ","))],"#
            text += #""rank":\#(rank),"slots":["#
            text.reserveCapacity(64 + slots.count * (slotsPerGpu * 5 + 2))
            for (layer, row) in slots.enumerated() {
                if layer > 0 { text += "," }
                text += "[" + row.map(String.init).joined(separator: ",") + "]"
            }
            text += #"],"slotsPerGpu":\#(slotsPerGpu),"state":"\#(state.rawValue)","#
            if let transfers, let rounds {
                text += #""transferRounds":\#(rounds),"transfers":["#
                for (index, transfer) in transfers.enumerated() {
                    if index > 0 { text += "," }
                    text += #"{"expert":\#(transfer.expert),"layer":\#(transfer.layer),"rank":\#(transfer.rank),"#
                    text += #""round":\#(transfer.round),"slot":\#(transfer.slot),"source":\#(transfer.source.map(String.init) ?? "null")}"#
                }
                text += "],"
            }
            text += #""unit":"\#(unit)","version":\#(version),"worker":"\#(worker)"}"#
            return ByteBuffer(string: text)
        }
    }

    public struct AckResult: Encodable, Sendable {
        public var worker: String
        public var version: Int
        public var ackedVersion: Int
    }

    public struct Status: Encodable, Sendable {
        public struct Current: Codable, Sendable {
            public var version: Int
            public var publishedAt: Date
            /// Live ranks whose newest acknowledged version is this one or later.
            public var acked: Int
            public var liveRanks: Int
            /// Every live rank runs it.
            public var live: Bool
        }
        public struct VersionCount: Codable, Sendable {
            public var version: Int
            public var ranks: Int
        }
        public var unit: String
        public var current: Current
        /// The newest version that every live rank has acknowledged; absent while some live rank has none.
        public var liveVersion: Int?
        /// How many live ranks run each version (their newest acknowledgement).
        public var versions: [VersionCount]
        public var unacknowledged: Int
    }

    func placement(for worker: String) throws -> (WorkerPlacement, Placement) {
        try Identifier.validate(worker, field: "worker")
        guard let (member, unit) = fleet.member(worker) else { throw RegistryError.workerNotFound(worker) }
        let placement = hub.current(for: unit)
        return (view(member.worker, unit: unit, placement: placement), placement)
    }

    func view(_ worker: Worker, unit: DeploymentUnit, placement: Placement) -> WorkerPlacement {
        let part = placement.version == 1 ? ([], 0) : hub.transfers(placement.version, for: unit.id, rank: worker.rank)
        return WorkerPlacement(
            worker: worker.id, unit: unit.id, rank: worker.rank, state: worker.state, version: placement.version,
            slotsPerGpu: unit.slotsPerGpu, slots: placement.slots(ofRank: worker.rank, slotsPerGpu: unit.slotsPerGpu),
            excludedRanks: placement.excludedRanks, transfers: part?.transfers, rounds: part?.rounds)
    }

    /// Waits up to `wait` for a version above `known`; nil means "not modified".
    func poll(_ worker: String, known: Int?, wait: Duration) async throws -> WorkerPlacement? {
        let (view, placement) = try placement(for: worker)
        guard let known, placement.version == known else { return view }
        guard let (member, unit) = fleet.member(worker),
            let newer = await hub.next(after: known, for: unit, timeout: wait)
        else { return nil }
        let current = fleet.member(worker)?.member.worker ?? member.worker
        return self.view(current, unit: unit, placement: newer)
    }

    func acknowledge(_ worker: String, version: Int) throws -> AckResult {
        try Identifier.validate(worker, field: "worker")
        guard let (member, unit) = fleet.member(worker) else { throw RegistryError.workerNotFound(worker) }
        let current = hub.current(for: unit).version
        guard (1...current).contains(version) else {
            throw ServiceRefusal.unknownVersion(unit: unit.id, version: version, current: current)
        }
        fleet.acknowledge(worker, version: version)
        writer.record(ack: PlacementAck(worker: worker, unit: unit.id, version: version, at: Date()))
        return AckResult(worker: worker, version: version, ackedVersion: max(version, member.ackedVersion ?? version))
    }

    func status(unit id: String) async throws -> Status {
        let unit = try await registry.unit(id)
        let placement = hub.current(for: unit)
        let live = fleet.members(unit: id).filter { $0.worker.state.isLive }
        let acked = live.compactMap(\.ackedVersion)
        let counts = Dictionary(grouping: acked, by: { $0 }).mapValues(\.count)
        let upToDate = acked.filter { $0 >= placement.version }.count
        return Status(
            unit: id,
            current: .init(
                version: placement.version, publishedAt: placement.createdAt, acked: upToDate,
                liveRanks: live.count, live: !live.isEmpty && upToDate == live.count),
            liveVersion: acked.count == live.count ? acked.min() : nil,
            versions: counts.sorted { $0.key > $1.key }.map { .init(version: $0.key, ranks: $0.value) },
            unacknowledged: live.count - acked.count)
    }

    struct HistoryPage: Sendable {
        var entries: [PlacementSummary]
        var nextBefore: Int?
    }

    /// A page of the unit's versions, newest first. Version 1, the initial table every engine starts from, is never
    /// stored; it ends the last page.
    func history(unit: DeploymentUnit, before: Int?, limit: Int) async throws -> HistoryPage {
        var entries = try await deadline.run { [store] in
            try await store.placementHistory(unit: unit.id, before: before, limit: limit)
        }
        if entries.count == limit, let last = entries.last, last.version > 1 {
            return HistoryPage(entries: entries, nextBefore: last.version)
        }
        if (before ?? Int.max) > 1, entries.last?.version != 1 {
            entries.append(PlacementSummary(Self.initial(unit), details: PlacementDetails(trigger: .initial)))
        }
        return HistoryPage(entries: entries, nextBefore: nil)
    }

    /// One version with its table; 404 for a version never published.
    func record(unit: DeploymentUnit, version: Int) async throws -> PlacementRecord {
        if let record = try await deadline.run({ [store] in
            try await store.placement(unit: unit.id, version: version)
        }) {
            return record
        }
        guard version == 1 else {
            throw ServiceRefusal.placementNotFound(unit: unit.id, version: version, current: hub.current(for: unit).version)
        }
        return PlacementRecord(placement: Self.initial(unit), details: PlacementDetails(trigger: .initial))
    }

    static func initial(_ unit: DeploymentUnit) -> Placement { Placement.initial(for: unit, at: unit.createdAt) }

    /// How the unit's GPUs got to `version` from the version before it (version 1, the start-up table, from nothing).
    func plan(unit: DeploymentUnit, version: Int) async throws -> MigrationPlan {
        let target = try await record(unit: unit, version: version)
        if let plan = hub.plan(version, for: unit.id) { return plan }
        guard version > 1 else { return MigrationPlan(transfers: [], rounds: [], expertBytes: expertBytes(unit.id)) }
        let previous = try await record(unit: unit, version: version - 1)
        return MigrationPlan.make(
            from: previous.placement.phy2log, to: target.placement.phy2log, slotsPerGpu: unit.slotsPerGpu,
            gpusPerNode: unit.gpusPerNode, excludedRanks: Set(target.placement.excludedRanks),
            expertBytes: expertBytes(unit.id))
    }

    /// Publishes a new version with `phy2log` and wakes every parked poll of the unit. With `basedOn`, the unit's
    /// current version must still be that one (the proposal was made against it), or nothing is published.
    /// `plan`: the migration plan from the current version, when the caller has made it already.
    func publish(
        unit: DeploymentUnit, phy2log: [[Int]], excludedRanks: [Int] = [], details: PlacementDetails,
        plan given: MigrationPlan? = nil
    ) async throws -> Placement {
        let id = unit.id
        try Placement.validate(phy2log, excludedRanks: excludedRanks, for: unit)
        let current = hub.current(for: unit).version
        if let basedOn = details.basedOn, basedOn != current {
            throw ServiceRefusal.versionConflict(
                "the proposal was made against version \(basedOn) but unit '\(id)' is now at \(current); propose again")
        }
        var details = details
        details.basedOn = current
        let placement = Placement(
            unit: id, version: current + 1, phy2log: phy2log, excludedRanks: excludedRanks.sorted(), createdAt: Date())
        do {
            try await deadline.run { [store, details] in
                try await store.savePlacement(placement, details: details)
            }
        } catch let error as PlacementStoreError {
            // Another publish won the version, or a timed-out one landed after all: catch up, let the caller retry.
            hub.load(try await deadline.run { [store] in try await store.latestPlacements() })
            throw ServiceRefusal.versionConflict("\(error); publish again")
        }
        let plan =
            given
            ?? MigrationPlan.make(
                from: hub.current(for: unit).phy2log, to: phy2log, slotsPerGpu: unit.slotsPerGpu,
                gpusPerNode: unit.gpusPerNode, excludedRanks: Set(excludedRanks), expertBytes: expertBytes(unit.id))
        hub.publish(placement, plan: plan)
        events.published(details.trigger)
        var metadata: Logger.Metadata = [
            "unit": "\(id)", "version": "\(placement.version)", "trigger": "\(details.trigger.rawValue)",
        ]
        if !excludedRanks.isEmpty { metadata["excluded_ranks"] = "\(placement.excludedRanks)" }
        if let prediction = details.prediction {
            metadata["balancedness"] = "\(prediction.balancednessBefore) -> \(prediction.balancednessAfter)"
            metadata["moved"] = "\(prediction.moved)"
        }
        metadata["transfers"] = "\(plan.transfers.count)"
        metadata["transfer_rounds"] = "\(plan.rounds.count)"
        logger.notice("placement published", metadata: metadata)
        return placement
    }
}
