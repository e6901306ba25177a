import ServiceLifecycle

/// A simulation as a Service of the ServiceGroup it shares with Fulcrum (`fulcrum serve --simulate`): it runs
/// until its duration ends or a graceful shutdown stops it, then hands over its report. Listed after the server,
/// it is stopped first, so the report can still read back from a running Fulcrum.
public struct SimulationService: Service {
    let simulation: Simulation
    let progress: @Sendable (String) -> Void
    let finished: @Sendable (SimulationReport) async throws -> Void

    public init(
        _ simulation: Simulation, progress: @escaping @Sendable (String) -> Void,
        finished: @escaping @Sendable (SimulationReport) async throws -> Void
    ) {
        self.simulation = simulation
        self.progress = progress
        self.finished = finished
    }

    public func run() async throws {
        let simulation = self.simulation
        let progress = self.progress
        let report = try await withGracefulShutdownHandler {
            try await simulation.run(progress: progress)
        } onGracefulShutdown: {
            simulation.stop()
        }
        try await finished(report)
    }
}
