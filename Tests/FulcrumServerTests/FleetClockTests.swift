import FulcrumCore
import FulcrumServer
import Foundation
import Testing

/// The fleet on a manual clock: the liveness rules in time the test controls.
@Suite("Fleet liveness on a manual clock")
struct FleetClockTests {
    /// Workers loaded at start-up have not reported; their silence counts from the load. Start-up may have waited
    /// a long time for the database (the API refusing every report meanwhile): they must not die at once.
    @Test func loadedWorkersAreGivenTheTimeoutFromTheLoadNotFromTheStart() {
        let clock = ManualClock()
        let fleet = Fleet(clock: clock)
        clock.advance(by: .seconds(30))  // start-up waiting for PostgreSQL
        let unit = DeploymentUnit(
            id: "u", role: .prefill, nodes: 1, gpusPerNode: 2,
            model: ModelShape(moeLayers: 1, routedExperts: 4, expertGroups: 2), redundantExperts: 0, createdAt: Date())
        let workers = (0..<2).map {
            Worker(
                id: "w\($0)", unit: "u", node: 0, gpu: $0, rank: $0,
                capacity: WorkerCapacity(kvTokens: 100_000, maxBatchTokens: 8_192), state: .active, registeredAt: Date(),
                lastSeen: nil)
        }
        fleet.load(units: [unit], workers: workers, acks: [])
        #expect(fleet.sweep(timeout: .seconds(10)).isEmpty)
        clock.advance(by: .seconds(9))
        #expect(fleet.sweep(timeout: .seconds(10)).isEmpty)
        clock.advance(by: .seconds(2))
        let died = fleet.sweep(timeout: .seconds(10))
        #expect(died.map(\.worker).sorted() == ["w0", "w1"] && died.allSatisfy { $0.to == .dead })
        #expect(died.first?.reason == "no telemetry since Fulcrum started 11.0 s ago", "\(died.first?.reason ?? "")")
    }
}
