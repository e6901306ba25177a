import FulcrumCore

/// What every part of a running simulation shares: where Fulcrum's replicas are and which one leads, the clock the run counts from, and where
/// measurements go.
final class SimulationContext: Sendable {
    let endpoints: Endpoints
    let token: String?
    let telemetryInterval: Double
    let started: ContinuousClock.Instant
    let recorder = SimulationRecorder()
    let placements = PlacementLedger()

    init(endpoints: Endpoints, token: String?, telemetryInterval: Double, started: ContinuousClock.Instant) {
        self.endpoints = endpoints
        self.token = token
        self.telemetryInterval = telemetryInterval
        self.started = started
    }

    /// Seconds since the run started.
    var elapsed: Double { (ContinuousClock.now - started).seconds }
}
