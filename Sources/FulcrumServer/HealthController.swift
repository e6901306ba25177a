import FulcrumStore
import Hummingbird

/// Probes for orchestrators: `/healthz` says the process answers; `/readyz` that it can do its job (store
/// reachable, schema current), so a load balancer sends traffic only to replicas that can serve it.
struct HealthController {
    let store: any Store

    struct Status: ResponseEncodable {
        var status: String
    }

    func addRoutes(to router: Router<FulcrumRequestContext>) {
        router.get("healthz") { _, _ in Status(status: "ok") }
        router.get("readyz") { _, _ in
            let readiness = await store.readiness()
            guard readiness.ready else {
                throw APIError(.serviceUnavailable, code: "not_ready", readiness.reason ?? "not ready")
            }
            return Status(status: "ready")
        }
    }
}
