import FulcrumCore

/// What every part of a running simulation shares: where Fulcrum is, the clock the run counts from, and where
/// measurements go.
final class SimulationContext: Sendable {
    let host: String
    let port: Int
    let token: String?
    let telemetryInterval: Double
    let started: ContinuousClock.Instant
    let recorder = SimulationRecorder()
    let placements = PlacementLedger()

    init(host: String, port: Int, token: String?, telemetryInterval: Double, started: ContinuousClock.Instant) {
        self.host = host
        self.port = port
        self.token = token
        self.telemetryInterval = telemetryInterval
        self.started = started
    }

    /// Seconds since the run started.
    var elapsed: Double { (ContinuousClock.now - started).seconds }
}
