import FulcrumCore
import Foundation
import Testing

@Suite("Deployment unit shape")
struct DeploymentUnitTests {
    static func unit(
        nodes: Int = 4, gpusPerNode: Int = 8, layers: Int = 58, experts: Int = 256, groups: Int = 8,
        redundant: Int = 32, id: String = "prefill-0"
    ) -> DeploymentUnit {
        DeploymentUnit(
            id: id, role: .prefill, nodes: nodes, gpusPerNode: gpusPerNode,
            model: ModelShape(moeLayers: layers, routedExperts: experts, expertGroups: groups),
            redundantExperts: redundant, createdAt: Date(timeIntervalSince1970: 0))
    }

    @Test func deepSeekUnitsAreValidWithTheirPublishedSlotCounts() throws {
        let prefill = Self.unit()
        try prefill.validate()
        #expect(prefill.gpus == 32 && prefill.slots == 288 && prefill.slotsPerGpu == 9)
        let decode = Self.unit(nodes: 18)
        try decode.validate()
        #expect(decode.gpus == 144 && decode.slotsPerGpu == 2)
    }

    @Test(arguments: [
        (unit(nodes: 0), "nodes"),
        (unit(nodes: -3), "nodes"),
        (unit(nodes: 1_000_000_000_000), "nodes"),
        (unit(nodes: 1_000, gpusPerNode: 72), "nodes"),
        (unit(gpusPerNode: 0), "gpusPerNode"),
        (unit(layers: 0), "model.moeLayers"),
        (unit(experts: 0), "model.routedExperts"),
        (unit(groups: 0), "model.expertGroups"),
        (unit(groups: 7), "model.expertGroups"),
        (unit(groups: 512), "model.expertGroups"),
        (unit(redundant: -1), "redundantExperts"),
        (unit(redundant: 31), "redundantExperts"),
        (unit(nodes: 5), "redundantExperts"),
        (unit(id: ""), "id"),
        (unit(id: "has space"), "id"),
        (unit(id: "ünit"), "id"),
        (unit(id: String(repeating: "a", count: 65)), "id"),
    ])
    func invalidShapesNameTheirField(unit: DeploymentUnit, field: String) {
        #expect {
            try unit.validate()
        } throws: { error in
            (error as? ValidationError)?.field == field
        }
    }

    @Test func theSlotRuleSaysWhy() {
        #expect(throws: ValidationError.self) { try Self.unit(redundant: 31).validate() }
        do {
            try Self.unit(redundant: 31).validate()
        } catch {
            #expect(error.message.contains("287 slots"))
            #expect(error.message.contains("32 GPUs"))
        }
    }

    @Test(arguments: ["a", "prefill-0", "node_7.gpu-3", "...", ".a", String(repeating: "x", count: 64)])
    func plainIdentifiersAreAccepted(_ id: String) throws {
        try Identifier.validate(id, field: "id")
    }

    /// "." and ".." are path segments a client resolves away: a unit or worker so named could never be reached.
    @Test(arguments: [".", "..", "", "a/b", "ü", String(repeating: "x", count: 65)])
    func identifiersNoClientCanAddressAreRefused(_ id: String) {
        #expect(throws: ValidationError.self) { try Identifier.validate(id, field: "id") }
    }
}
