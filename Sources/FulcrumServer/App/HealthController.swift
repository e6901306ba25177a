import FulcrumStore
import Hummingbird

/// Probes for orchestrators: `/healthz` says the process answers; `/readyz` that it can do its job (store
/// reachable, schema current), so a load balancer sends traffic only to replicas that can serve it.
struct HealthController {
    let store: any StoreHealth
    let startup: StartupGate
    let leadership: Leadership

    struct Status: ResponseEncodable {
        var status: String
    }

    func addRoutes(to router: Router<FulcrumRequestContext>) {
        router.get("healthz") { _, _ in Status(status: "ok") }
        router.get("readyz") { _, _ in
            if case .starting(let reason) = startup.current {
                throw APIError(.serviceUnavailable, code: "not_ready", "starting: \(reason)")
            }
            guard leadership.isLeader else {
                // A Service in front of the replicas routes to the leader alone; a client probing several finds it.
                var refusal = APIError(
                    .serviceUnavailable, code: "not_ready",
                    "standby: " + (leadership.leaderURL.map { "the leader is \($0)" } ?? "no leader known yet"))
                if let leaderURL = leadership.leaderURL { refusal.headers[.fulcrumLeader] = leaderURL }
                throw refusal
            }
            let readiness = await store.readiness()
            guard readiness.ready else {
                throw APIError(.serviceUnavailable, code: "not_ready", readiness.reason ?? "not ready")
            }
            return Status(status: "ready")
        }
    }
}

/// Refuses the API until start-up has loaded the registry (see `StartupGate`), and on a replica that does not lead.
struct RequireStarted<Context: RequestContext>: RouterMiddleware {
    let gate: StartupGate
    let leadership: Leadership

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        if !gate.isStarted, case .starting(let reason) = gate.current {
            var refusal = APIError(.serviceUnavailable, code: "starting", "Fulcrum is starting and not serving yet: \(reason)")
            refusal.headers[.retryAfter] = "1"
            throw refusal
        }
        guard leadership.isLeader else { throw APIError.notLeader(leaderURL: leadership.leaderURL) }
        return try await next(request, context)
    }
}
