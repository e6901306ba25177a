import CoreMetrics
import FulcrumCore
import Prometheus
import Synchronization

/// What happens, counted through swift-metrics into this application's own Prometheus registry (not the global
/// metrics system, so that several applications in one process, as in the tests, keep their counts apart). Labels
/// are bounded: phases, policies, outcomes and triggers, never units, experts or requests.
public final class EventCounters: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let reportsApplied: CoreMetrics.Counter
    private let reportsDuplicate: CoreMetrics.Counter
    private let unknownIDs: [String: CoreMetrics.Counter]
    private let assigned: [String: CoreMetrics.Counter]
    private let published: [PlacementTrigger: CoreMetrics.Counter]
    private let solve: CoreMetrics.Timer
    private let assignBatch: [Role: CoreMetrics.Timer]
    private let outOfScope: [AccessRole: CoreMetrics.Counter]
    private let outOfScopeCount = Atomic<Int>(0)

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["fulcrum_rebalance_solve_seconds"] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
        ]
        factory.durationHistogramBuckets["fulcrum_assignment_batch_seconds"] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        ]
        self.factory = factory
        reportsApplied = Counter(
            label: "fulcrum_telemetry_reports_total", dimensions: [("outcome", "applied")], factory: factory)
        reportsDuplicate = Counter(
            label: "fulcrum_telemetry_reports_total", dimensions: [("outcome", "duplicate")], factory: factory)
        unknownIDs = Dictionary(
            uniqueKeysWithValues: ["admitted", "finished"].map {
                ($0, Counter(label: "fulcrum_telemetry_unknown_ids_total", dimensions: [("list", $0)], factory: factory))
            })
        var assigned: [String: CoreMetrics.Counter] = [:]
        for phase in Role.allCases {
            for policy in [AssignmentService.fulcrumPolicy, AssignmentService.leastTokensPolicy] {
                assigned["\(phase.rawValue)/\(policy)"] = Counter(
                    label: "fulcrum_assignments_total", dimensions: [("phase", phase.rawValue), ("policy", policy)],
                    factory: factory)
            }
        }
        self.assigned = assigned
        published = Dictionary(
            uniqueKeysWithValues: PlacementTrigger.allCases.map {
                ($0, Counter(label: "fulcrum_placements_published_total", dimensions: [("trigger", $0.rawValue)], factory: factory))
            })
        solve = Timer(label: "fulcrum_rebalance_solve_seconds", dimensions: [], factory: factory)
        outOfScope = Dictionary(
            uniqueKeysWithValues: [AccessRole.worker, .gateway].map {
                ($0, Counter(label: "fulcrum_auth_out_of_scope_total", dimensions: [("role", $0.rawValue)], factory: factory))
            })
        assignBatch = Dictionary(
            uniqueKeysWithValues: Role.allCases.map {
                ($0, Timer(label: "fulcrum_assignment_batch_seconds", dimensions: [("phase", $0.rawValue)], factory: factory))
            })
    }

    func report(applied: Bool) {
        (applied ? reportsApplied : reportsDuplicate).increment()
    }

    /// Ids a worker's `admitted` or `finished` list named that Fulcrum never assigned to it (another router's, or
    /// forgotten): ignored, and counted here.
    func unknownIDs(_ count: Int, in list: String) {
        guard count > 0 else { return }
        unknownIDs[list]?.increment(by: count)
    }

    func assign(_ count: Int, phase: Role, policy: String) {
        guard count > 0 else { return }
        assigned["\(phase.rawValue)/\(policy)"]?.increment(by: count)
    }

    func batch(_ phase: Role, took duration: Duration) {
        assignBatch[phase]?.recordNanoseconds(Int64(duration.seconds * 1e9))
    }

    func published(_ trigger: PlacementTrigger) {
        published[trigger]?.increment()
    }

    /// A scoped token used outside its scope (refused with 403).
    func refusedOutOfScope(_ role: AccessRole) {
        outOfScope[role]?.increment()
        outOfScopeCount.add(1, ordering: .relaxed)
    }

    var outOfScopeRefusals: Int { outOfScopeCount.load(ordering: .relaxed) }

    func solved(in duration: Duration) {
        solve.recordNanoseconds(Int64(duration.seconds * 1e9))
    }
}
