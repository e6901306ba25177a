import FulcrumCore
import Foundation
import Hummingbird
import Prometheus

/// `GET /v1/metrics` (JSON for dashboards) and `GET /metrics` (Prometheus text format).
struct MetricsController {
    let services: Services
    let staleAfter: Duration

    func addRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.get("v1/metrics", use: json)
        group.get("metrics", use: prometheus)
    }

    struct JSONView: ResponseEncodable {
        var snapshot: MetricsSnapshot
        func encode(to encoder: any Encoder) throws { try snapshot.encode(to: encoder) }
    }

    @Sendable func json(request: Request, context: FulcrumRequestContext) async throws -> JSONView {
        JSONView(snapshot: MetricsSnapshot.take(services, staleAfter: staleAfter))
    }

    @Sendable func prometheus(request: Request, context: FulcrumRequestContext) async throws -> Response {
        var buffer: [UInt8] = []
        services.events.registry.emit(into: &buffer)
        Self.gauges(MetricsSnapshot.take(services, staleAfter: staleAfter)).emit(into: &buffer)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    /// The snapshot as gauges, in a registry made for this scrape, so a deleted unit's series disappear with it.
    /// One series per unit (at most a few hundred) and per state or phase: never per expert, worker or request.
    static func gauges(_ snapshot: MetricsSnapshot) -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double?) {
            guard let value, value.isFinite else { return }
            registry.makeGauge(
                descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels
            ).set(value)
        }
        for (state, count) in snapshot.workers.sorted(by: { $0.key < $1.key }) {
            gauge("fulcrum_workers", "Workers by state.", [("state", state)], Double(count))
        }
        for unit in snapshot.units {
            let u = [("unit", unit.unit), ("role", unit.role.rawValue)]
            gauge("fulcrum_unit_stale_ranks", "Live ranks whose telemetry is stale.", u, Double(unit.telemetry.staleRanks))
            gauge("fulcrum_unit_telemetry_age_p99_seconds", "p99 age of the ranks' newest reports.", u, unit.telemetry.ageP99Seconds)
            gauge("fulcrum_unit_telemetry_age_p50_seconds", "Median age of the ranks' newest reports.", u, unit.telemetry.ageP50Seconds)
            let a = unit.attention
            gauge("fulcrum_attention_paused", "1 while the unit's attention balancer is paused.", u, a.paused ? 1 : 0)
            gauge("fulcrum_attention_assignments_per_second", "Assignments per second to the unit.", u, a.assignmentsPerSecond)
            for (measure, balance) in [("work", a.work), ("tokens", a.tokens), ("kv", a.kv), ("requests", a.requests)] {
                gauge(
                    "fulcrum_attention_max_over_mean", "Max/mean across the unit's ranks (1 is perfect).",
                    u + [("measure", measure)], balance?.maxOverMean)
            }
            let e = unit.eplb
            gauge("fulcrum_eplb_paused", "1 while the unit's expert-parallel balancer is paused.", u, e.paused ? 1 : 0)
            gauge("fulcrum_eplb_expert_load_max_over_mean", "Per-GPU expert load, peak/mean over layers.", u, e.expertLoad?.maxOverMean)
            gauge("fulcrum_placement_version", "The unit's current placement version.", u, Double(e.placement.version))
            gauge("fulcrum_placement_age_seconds", "Age of the current placement.", u, e.placement.ageSeconds)
            gauge("fulcrum_placement_acked_ranks", "Live ranks running the current placement.", u, Double(e.placement.ackedRanks))
            gauge("fulcrum_placement_live_ranks", "Live ranks of the unit.", u, Double(e.placement.liveRanks))
            gauge("fulcrum_placement_polls_parked", "Workers' placement polls waiting now for a new version.", u, Double(e.parkedPolls))
            gauge("fulcrum_eplb_solve_p99_seconds", "p99 of the unit's recent rebalance solves.", u, e.solveSeconds.p99)
            gauge(
                "fulcrum_eplb_last_rebalance_age_seconds", "Seconds since the unit's last rebalance that was not a dry run.", u,
                e.lastRebalance.map { max(0, snapshot.at.timeIntervalSince($0.at)) })
            for decision in RebalanceService.LastRebalance.Decision.allCases {
                gauge(
                    "fulcrum_eplb_last_rebalance", "1 for the outcome of the unit's last rebalance, 0 for the others.",
                    u + [("outcome", decision.rawValue)], e.lastRebalance.map { $0.decision == decision ? 1 : 0 })
            }
        }
        for (phase, figures) in snapshot.assignments.sorted(by: { $0.key < $1.key }) {
            gauge("fulcrum_assignments_per_second", "Assignments per second, last 10 s.", [("phase", phase)], figures.perSecond)
        }
        let w = snapshot.writer
        gauge(
            "fulcrum_eplb_checks_completed", "Expert-parallel balancer checks finished since start (one a second while it runs).",
            [], Double(snapshot.eplbChecks))
        gauge("fulcrum_http_connections_open", "HTTP connections open now.", [], Double(snapshot.connections.open))
        gauge(
            "fulcrum_http_connection_cap_reached", "Times since start the listener stopped accepting at --max-connections.",
            [], Double(snapshot.connections.capReached))
        gauge("fulcrum_writer_lag_seconds", "Seconds since the database last took a batch while rows wait.", [], w.lagSeconds)
        gauge("fulcrum_writer_buffered_rows", "Telemetry rows waiting for the database.", [], Double(w.bufferedRows))
        gauge("fulcrum_writer_dropped_samples", "Telemetry rows dropped while the database was unreachable.", [], Double(w.droppedSamples))
        gauge("fulcrum_writer_dropped_ledger_rows", "Ledger rows dropped while the database was unreachable.", [], Double(w.droppedLedgerRows))
        gauge(
            "fulcrum_writer_consecutive_failures", "Telemetry writes failed in a row since the last that landed.", [],
            Double(w.consecutiveFailures))
        gauge(
            "fulcrum_writer_write_waiting_seconds", "How long the telemetry write in flight has waited (0 between writes).",
            [], w.writeWaitingSeconds)
        gauge(
            "fulcrum_writer_oldest_unwritten_seconds", "Age of the oldest telemetry or ledger row not yet in the database.",
            [], w.oldestUnwrittenSeconds)
        return registry
    }
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document, as checked in.
struct OpenAPIController {
    /// Looked up beside the executable rather than through `Bundle.module`, whose generated accessor traps when
    /// the bundle is missing (an image that copied only the binary): then this route answers 500 and says why.
    static let document: Data? = {
        let name = "fulcrum_FulcrumServer.resources"
        let executableDirectory = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        return [Bundle.main.bundleURL, executableDirectory]
            .map { $0.appendingPathComponent(name).appendingPathComponent("openapi.json") }
            .lazy.compactMap { try? Data(contentsOf: $0) }.first
    }()

    func addRoutes(to router: Router<FulcrumRequestContext>) {
        router.get("openapi.json") { _, _ -> Response in
            guard let document = Self.document else {
                throw APIError(.internalServerError, code: "internal", "the OpenAPI document is missing: the resource bundle fulcrum_FulcrumServer.resources must sit next to the executable")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
    }
}
