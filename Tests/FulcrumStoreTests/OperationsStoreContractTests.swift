import FulcrumCore
import FulcrumStore
import FulcrumTestSupport
import Foundation
import Testing

/// `OperationsStore`: an operator's change and its audit entry land together or not at all, revisions guard
/// concurrent operators, and the trail reads back newest first.
@Suite("Store contract: operations and audit")
struct OperationsStoreContractTests {
    static func entry(_ action: String, target: String, at offset: TimeInterval = 0, actor: String = "alice")
        -> AuditEntry
    {
        AuditEntry(
            at: Fixtures.t0.addingTimeInterval(offset), actor: actor, action: action, target: target, reason: "test",
            before: nil, after: nil)
    }

    @Test(arguments: StoreKind.available)
    func aWorkerChangeIsRecordedWithItsAuditEntryAndRaisesTheRevision(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            #expect(try await store.workerRevision("w0") == 1)

            let outcome = try await store.changeWorkerState(
                "w0", action: .cordon, audit: Self.entry("worker.cordon", target: "worker/w0", at: 1),
                expectedRevision: 1)
            #expect(outcome.change?.to == .cordoned && outcome.revision == 2)
            #expect(try await store.worker("w0")?.state == .cordoned)
            #expect(try await store.workerRevision("w0") == 2)
            #expect(try await store.workerHistory("w0").last?.reason == "cordon by alice: test")
            let trail = try await store.audit(AuditQuery(target: "worker/w0"))
            #expect(trail.map(\.action) == ["worker.cordon"])

            // Already cordoned: nothing changes, nothing is recorded.
            let again = try await store.changeWorkerState(
                "w0", action: .cordon, audit: Self.entry("worker.cordon", target: "worker/w0", at: 2),
                expectedRevision: nil)
            #expect(again.change == nil && again.revision == 2)
            #expect(try await store.audit(AuditQuery()).count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func aStaleRevisionOrADeadWorkerChangesNothing(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            _ = try await store.registerWorker(Fixtures.registration("w0"), at: Fixtures.t0)
            await #expect(throws: AdminError.preconditionFailed(target: "worker/w0", current: "1")) {
                try await store.changeWorkerState(
                    "w0", action: .drain, audit: Self.entry("worker.drain", target: "worker/w0"), expectedRevision: 7)
            }
            try await store.setWorkerState("w0", to: .dead, reason: "timeout", at: Fixtures.t0.addingTimeInterval(5))
            await #expect(throws: AdminError.workerDead("w0")) {
                try await store.changeWorkerState(
                    "w0", action: .cordon, audit: Self.entry("worker.cordon", target: "worker/w0"), expectedRevision: nil)
            }
            await #expect(throws: RegistryError.workerNotFound("nobody")) {
                try await store.changeWorkerState(
                    "nobody", action: .cordon, audit: Self.entry("worker.cordon", target: "worker/nobody"),
                    expectedRevision: nil)
            }
            #expect(try await store.worker("w0")?.state == .dead)
            #expect(try await store.workerRevision("w0") == 2)
            #expect(try await store.audit(AuditQuery()).isEmpty)
        }
    }

    @Test(arguments: StoreKind.available)
    func unitControlsAreVersionedAndAuditedWithBeforeAndAfter(kind: StoreKind) async throws {
        try await kind.withStore { store in
            try await store.createUnit(Fixtures.unit())
            #expect(try await store.unitControls("prefill-a").version == 0)
            #expect(try await store.allUnitControls().isEmpty)

            let (before, after) = try await store.updateUnitControls(
                "prefill-a", expectedVersion: 0, audit: Self.entry("unit.pause", target: "unit/prefill-a", at: 1)
            ) { $0.paused.eplb = true }
            #expect(before.version == 0 && after.version == 1 && after.paused.eplb && after.updatedBy == "alice")
            #expect(try await store.unitControls("prefill-a") == after)
            #expect(try await store.allUnitControls().map(\.unit) == ["prefill-a"])
            let entry = try #require(try await store.audit(AuditQuery(action: "unit.pause")).first)
            #expect(entry.before == AuditCoding.value(before) && entry.after == AuditCoding.value(after))

            // A stale version, a change that throws and an unknown unit leave controls and trail as they were.
            await #expect(throws: AdminError.preconditionFailed(target: "unit/prefill-a", current: "1")) {
                try await store.updateUnitControls(
                    "prefill-a", expectedVersion: 0, audit: Self.entry("unit.resume", target: "unit/prefill-a")
                ) { $0.paused.eplb = false }
            }
            struct Refused: Error {}
            await #expect(throws: Refused.self) {
                try await store.updateUnitControls(
                    "prefill-a", expectedVersion: nil, audit: Self.entry("unit.policy", target: "unit/prefill-a")
                ) { controls in
                    controls.paused.attention = true
                    throw Refused()
                }
            }
            await #expect(throws: RegistryError.unitNotFound("nope")) {
                try await store.updateUnitControls(
                    "nope", expectedVersion: nil, audit: Self.entry("unit.pause", target: "unit/nope")
                ) { $0.paused.eplb = true }
            }
            #expect(try await store.unitControls("prefill-a") == after)
            #expect(try await store.audit(AuditQuery()).count == 1)
        }
    }

    @Test(arguments: StoreKind.available)
    func theTrailReadsNewestFirstFilteredAndPaged(kind: StoreKind) async throws {
        try await kind.withStore { store in
            for index in 0..<5 {
                try await store.appendAudit(
                    Self.entry(index.isMultiple(of: 2) ? "worker.cordon" : "unit.pause",
                        target: "worker/w\(index)", at: TimeInterval(index * 10), actor: "op\(index)"))
            }
            let all = try await store.audit(AuditQuery())
            #expect(all.map(\.actor) == ["op4", "op3", "op2", "op1", "op0"])
            #expect(all.map(\.id) == all.map(\.id).sorted(by: >))
            #expect(try await store.audit(AuditQuery(action: "worker.cordon")).map(\.actor) == ["op4", "op2", "op0"])
            #expect(try await store.audit(AuditQuery(target: "worker/w1")).map(\.actor) == ["op1"])
            let window = AuditQuery(since: Fixtures.t0.addingTimeInterval(10), until: Fixtures.t0.addingTimeInterval(30))
            #expect(try await store.audit(window).map(\.actor) == ["op2", "op1"])
            let page = try await store.audit(AuditQuery(limit: 2))
            #expect(page.map(\.actor) == ["op4", "op3"])
            let next = try await store.audit(AuditQuery(before: page.last?.id, limit: 2))
            #expect(next.map(\.actor) == ["op2", "op1"])
        }
    }
}
