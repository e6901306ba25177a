import FulcrumCore
import FulcrumStore
import Foundation
import HTTPTypes
import Hummingbird

/// Operators' view of a unit's placements.
struct PlacementsController {
    let placements: PlacementService
    let rebalancer: RebalanceService
    let registry: RegistryService
    let estimator: ExpertLoadEstimator
    /// Each unit's window and staleness policy come from its effective policy.
    let controls: UnitControlsBook
    let staleAfter: Duration
    let maxBodyBytes: Int

    func addRoutes(to units: RouterGroup<FulcrumRequestContext>) {
        units.get(":unit/placement", use: current)
        units.get(":unit/placement/status", use: status)
        units.post(":unit/placements", use: publish)
        units.get(":unit/placements", use: history)
        units.get(":unit/placements/:version", use: version)
        units.get(":unit/placements/:version/plan", use: plan)
        units.post(":unit/rebalance", use: rebalance)
        units.get(":unit/load", use: load)
        units.get(":unit/expert-load", use: expertLoad)
    }

    struct ExpertLoadView: ResponseEncodable {
        var unit: String
        var windowSeconds: Double
        /// Reports folded in, and how far back the oldest counted one goes.
        var reports: Int
        var spanSeconds: Double
        var totalTokens: Double
        /// `weight[layer][expert]`: tokens routed to each logical expert, the balancer's input.
        var weight: [[Double]]
    }

    /// `GET /v1/units/{unit}/expert-load`: the sliding-window estimate the expert-parallel balancer solves for.
    @Sendable func expertLoad(request: Request, context: FulcrumRequestContext) async throws -> ExpertLoadView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let expertLoadWindow = controls.effective(unit.id).window
        let estimate = estimator.estimate(unit: unit.id, window: expertLoadWindow)
        let weight =
            estimate?.weight
            ?? Array(repeating: Array(repeating: 0, count: unit.model.routedExperts), count: unit.model.moeLayers)
        return ExpertLoadView(
            unit: unit.id, windowSeconds: expertLoadWindow.seconds, reports: estimate?.reports ?? 0,
            spanSeconds: estimate?.spans.seconds ?? 0, totalTokens: weight.joined().reduce(0, +), weight: weight)
    }

    struct LoadView: ResponseEncodable {
        var unit: String
        var staleAfterSeconds: Double
        var policy: StalenessPolicy
        var eligible: Int
        var ranks: [RankLoad]
    }

    /// `GET /v1/units/{unit}/load`: every rank's load figures, age and eligibility, as the balancers see them.
    @Sendable func load(request: Request, context: FulcrumRequestContext) async throws -> LoadView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let policy = controls.effective(unit.id).stalePolicy
        let ranks = placements.fleet.loads(unit: unit.id, staleAfter: staleAfter, policy: policy)
        return LoadView(
            unit: unit.id, staleAfterSeconds: staleAfter.seconds, policy: policy, eligible: ranks.count(where: \.eligible),
            ranks: ranks)
    }

    struct PlacementView: ResponseEncodable {
        var unit: String
        var version: Int
        var createdAt: Date
        var slotsPerGpu: Int
        var excludedRanks: [Int]
        var phy2log: [[Int]]

        init(_ placement: Placement, of unit: DeploymentUnit) {
            self.unit = unit.id
            version = placement.version
            createdAt = placement.createdAt
            slotsPerGpu = unit.slotsPerGpu
            excludedRanks = placement.excludedRanks
            phy2log = placement.phy2log
        }
    }

    /// One version in a unit's history: why it exists and what it was predicted to do.
    struct HistoryEntry: Codable, Sendable {
        var version: Int
        var createdAt: Date
        var trigger: PlacementTrigger
        var basedOn: Int?
        var excludedRanks: [Int]
        var prediction: PlacementPrediction?
        var window: LoadWindowSummary?
        var transfer: PlacementTransfer?

        init(_ summary: PlacementSummary) {
            version = summary.version
            createdAt = summary.createdAt
            trigger = summary.details.trigger
            basedOn = summary.details.basedOn
            excludedRanks = summary.excludedRanks
            prediction = summary.details.prediction
            window = summary.details.window
            transfer = summary.details.transfer
        }
    }

    struct HistoryView: ResponseEncodable {
        var unit: String
        /// Newest first.
        var placements: [HistoryEntry]
        /// Pass as `?before=` for the next page; absent on the last page.
        var nextBefore: Int?
    }

    /// `GET /v1/units/{unit}/placements?before=&limit=`: the unit's published versions, newest first.
    @Sendable func history(request: Request, context: FulcrumRequestContext) async throws -> HistoryView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let limit = try Self.integer(request, "limit", in: 1...500) ?? 50
        let before = try Self.integer(request, "before", in: 1...Int(Int32.max))
        let page = try await placements.history(unit: unit, before: before, limit: limit)
        return HistoryView(
            unit: unit.id, placements: page.entries.map(HistoryEntry.init), nextBefore: page.nextBefore)
    }

    struct VersionView: ResponseEncodable {
        var unit: String
        var slotsPerGpu: Int
        var entry: HistoryEntry
        var phy2log: [[Int]]

        enum CodingKeys: String, CodingKey {
            case unit, slotsPerGpu, phy2log
        }

        func encode(to encoder: any Encoder) throws {
            try entry.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(unit, forKey: .unit)
            try container.encode(slotsPerGpu, forKey: .slotsPerGpu)
            try container.encode(phy2log, forKey: .phy2log)
        }
    }

    /// The `{version}` path parameter.
    static func version(_ context: FulcrumRequestContext) throws -> Int {
        let text = try context.parameters.require("version")
        guard let version = Int(text), version >= 1 else {
            throw APIError(
                .badRequest, code: "invalid_field", "version must be a whole number of at least 1, got '\(text)'",
                field: "version")
        }
        return version
    }

    struct PlanView: ResponseEncodable {
        struct Round: Codable {
            var round: Int
            var transfers: Int
            var bytes: Int
        }
        var unit: String
        var version: Int
        /// The version the transfers start from: the one before (none for version 1).
        var fromVersion: Int?
        var expertBytes: Int
        var bytes: Int
        var rounds: [Round]
        var transfers: [MigrationPlan.Transfer]
    }

    /// `GET /v1/units/{unit}/placements/{version}/plan`: how the unit's GPUs get to `version` from the one before.
    @Sendable func plan(request: Request, context: FulcrumRequestContext) async throws -> PlanView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let version = try Self.version(context)
        let plan = try await placements.plan(unit: unit, version: version)
        return PlanView(
            unit: unit.id, version: version, fromVersion: version > 1 ? version - 1 : nil, expertBytes: plan.expertBytes,
            bytes: plan.bytes,
            rounds: plan.rounds.enumerated().map { .init(round: $0.offset, transfers: $0.element, bytes: $0.element * plan.expertBytes) },
            transfers: plan.transfers)
    }

    /// `GET /v1/units/{unit}/placements/{version}`: one version with its table.
    @Sendable func version(request: Request, context: FulcrumRequestContext) async throws -> VersionView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let version = try Self.version(context)
        let record = try await placements.record(unit: unit, version: version)
        return VersionView(
            unit: unit.id, slotsPerGpu: unit.slotsPerGpu, entry: HistoryEntry(record.summary),
            phy2log: record.placement.phy2log)
    }

    /// `POST /v1/units/{unit}/rebalance {"dryRun": bool}`: solve now from the current load estimate; unless a dry
    /// run, publish the proposal (when it changes anything). 201 when a version was published, else 200.
    @Sendable func rebalance(request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<RebalanceService.Outcome>
    {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let (dryRun, reason) = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            let body = try JSONObjectReader(json)
            try body.rejectUnknown(["dryRun", "reason"])
            return (try body.optionalBool("dryRun") ?? false, try body.reason())
        }
        let audit = context.actor.audit("placement.rebalance", target: AuditEntry.unit(unit.id), reason: reason)
        let outcome = try await rebalancer.rebalance(unit, dryRun: dryRun, audit: audit)
        guard let version = outcome.version else { return EditedResponse(status: .ok, response: outcome) }
        return EditedResponse(
            status: .created, headers: [.location: "/v1/units/\(unit.id)/placements/\(version)"], response: outcome)
    }

    /// A whole-number query parameter within `range`; nil when absent.
    static func integer(_ request: Request, _ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = request.uri.queryParameters.get(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw APIError(
                .badRequest, code: "invalid_field",
                "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'",
                field: name)
        }
        return value
    }

    @Sendable func current(request: Request, context: FulcrumRequestContext) async throws -> PlacementView {
        let unit = try await registry.unit(context.parameters.require("unit"))
        return PlacementView(placements.hub.current(for: unit), of: unit)
    }

    @Sendable func status(request: Request, context: FulcrumRequestContext) async throws -> PlacementService.Status {
        try await placements.status(unit: context.parameters.require("unit"))
    }

    @Sendable func publish(request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<PlacementView>
    {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let (phy2log, excluded) = try await request.parseJSON(limit: maxBodyBytes) { (json) throws(JSONInputError) in
            let reader = try JSONObjectReader(json)
            return (try reader.intMatrix("phy2log"), try reader.ints("excludedRanks") ?? [])
        }
        let current = placements.hub.current(for: unit).version
        let audit = context.actor.audit(
            "placement.publish", target: AuditEntry.unit(unit.id), reason: nil,
            before: .object(["version": .int(current)]),
            after: .object(["version": .int(current + 1), "excludedRanks": .array(excluded.map { .int($0) })]))
        let placement = try await placements.publish(
            unit: unit, phy2log: phy2log, excludedRanks: excluded,
            details: PlacementDetails(trigger: .explicit, basedOn: current, prediction: nil, window: nil, audit: audit))
        return EditedResponse(
            status: .created, headers: [.location: "/v1/units/\(unit.id)/placement"],
            response: PlacementView(placement, of: unit))
    }
}
