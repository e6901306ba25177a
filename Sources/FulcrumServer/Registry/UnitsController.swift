import Foundation
import FulcrumCore
import Hummingbird

/// `/v1/units`: operators declare deployment units and look at their workers.
struct UnitsController {
    let registry: RegistryService
    let maxBodyBytes: Int

    func addRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.post(use: create)
        group.get(use: list)
        group.get(":unit", use: show)
        group.delete(":unit", use: delete)
    }

    /// A unit as the API shows it: what was declared plus the figures derived from it.
    struct UnitView: Encodable {
        var id: String
        var role: Role
        var nodes: Int
        var gpusPerNode: Int
        var gpus: Int
        var model: ModelShape
        var redundantExperts: Int
        var slots: Int
        var slotsPerGpu: Int
        var createdAt: Date

        init(_ unit: DeploymentUnit) {
            id = unit.id
            role = unit.role
            nodes = unit.nodes
            gpusPerNode = unit.gpusPerNode
            gpus = unit.gpus
            model = unit.model
            redundantExperts = unit.redundantExperts
            slots = unit.slots
            slotsPerGpu = unit.slotsPerGpu
            createdAt = unit.createdAt
        }
    }

    struct UnitDetail: ResponseEncodable {
        var unit: UnitView
        var workers: [WorkerState: [Worker]]

        func encode(to encoder: any Encoder) throws {
            try unit.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            var byState = container.nestedContainer(keyedBy: Keys.self, forKey: .workers)
            for state in WorkerState.allCases {
                try byState.encode(workers[state] ?? [], forKey: Keys(state.rawValue))
            }
        }

        struct Keys: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ string: String) { stringValue = string }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
            static let workers = Keys("workers")
        }
    }

    struct UnitList: ResponseEncodable {
        var units: [UnitView]
    }

    @Sendable func create(request: Request, context: FulcrumRequestContext) async throws
        -> EditedResponse<UnitDetail>
    {
        let draft = try await request.parseJSON(limit: maxBodyBytes, RegistryService.UnitDraft.init(json:))
        let unit = try await registry.createUnit(draft)
        return EditedResponse(
            status: .created, headers: [.location: "/v1/units/\(unit.id)"],
            response: UnitDetail(unit: UnitView(unit), workers: [:]))
    }

    @Sendable func list(request: Request, context: FulcrumRequestContext) async throws -> UnitList {
        UnitList(units: try await registry.units().map(UnitView.init))
    }

    @Sendable func show(request: Request, context: FulcrumRequestContext) async throws -> UnitDetail {
        let unit = try await registry.unit(context.parameters.require("unit"))
        let workers = try await registry.workers(unit: unit.id, state: nil)
        return UnitDetail(unit: UnitView(unit), workers: Dictionary(grouping: workers, by: \.state))
    }

    @Sendable func delete(request: Request, context: FulcrumRequestContext) async throws -> HTTPResponse.Status {
        try await registry.deleteUnit(context.parameters.require("unit"))
        return .noContent
    }
}

extension RegistryService.UnitDraft {
    /// `POST /v1/units`. Other members are ignored, as the API document says.
    init(json: JSONValue) throws(JSONInputError) {
        let root = try JSONObjectReader(json)
        id = try root.string("id")
        role = try root.choice("role", Role.self)
        nodes = try root.int("nodes")
        gpusPerNode = try root.int("gpusPerNode")
        let model = try root.requiredObject("model")
        self.model = ModelShape(
            moeLayers: try model.int("moeLayers"), routedExperts: try model.int("routedExperts"),
            expertGroups: try model.int("expertGroups"))
        redundantExperts = try root.int("redundantExperts")
    }
}
