import FulcrumServer
import HTTPTypes
import Logging
import FulcrumTestSupport
import Foundation
import Testing

@Suite("Durability", .enabled(if: TestDatabases.serverURL != nil))
struct RestartTests {
    @Test func unitsAndWorkersSurviveARestart() async throws {
        try await withTestDatabase { url in
            let configuration = FulcrumConfiguration(database: url, logLevel: .warning)
            let registeredAt = try await runApp(configuration) { client in
                #expect(try await client.createUnit().status == .created)
                #expect(try await client.registerWorker("w-3-1", node: 3, gpu: 1).status == .created)
                return try await client.request(.get, "/v1/workers/w-3-1")["registeredAt"] as? String
            }
            try await runApp(configuration) { client in
                let unit = try await client.request(.get, "/v1/units/prefill-0")
                #expect(unit.status == .ok && unit["slotsPerGpu"] as? Int == 9)
                let worker = try await client.request(.get, "/v1/workers/w-3-1")
                #expect(worker["rank"] as? Int == 25 && worker["registeredAt"] as? String == registeredAt)
                // Registering after the restart is a re-registration, not a new worker.
                #expect(try await client.registerWorker("w-3-1", node: 3, gpu: 1).status == .ok)
            }
        }
    }
}
