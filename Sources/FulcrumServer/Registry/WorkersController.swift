import FulcrumCore
import FulcrumStore
import Hummingbird

/// `/v1/workers`: GPU workers register themselves; operators list and inspect them.
struct WorkersController {
    let registry: RegistryService
    let fleet: Fleet
    let drains: DrainService
    let staleAfter: Duration
    let scopes: ScopeGuard
    let maxBodyBytes: Int

    /// `PUT /v1/workers/{worker}`: workers register themselves.
    func addWorkerRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.put(":worker", use: register)
    }

    func addAdminRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.get(use: list)
        group.get(":worker", use: show)
        group.get(":worker/history", use: history)
    }

    /// The body of `PUT /v1/workers/{worker}`; the id comes from the path.
    /// `PUT /v1/workers/{id}`; the id comes from the path. Other members are ignored.
    struct RegistrationBody {
        var unit: String
        var node: Int
        var gpu: Int
        var capacity: WorkerCapacity

        init(json: JSONValue) throws(JSONInputError) {
            let root = try JSONObjectReader(json)
            unit = try root.string("unit")
            node = try root.int("node")
            gpu = try root.int("gpu")
            let capacity = try root.requiredObject("capacity")
            self.capacity = WorkerCapacity(
                kvTokens: try capacity.int("kvTokens"), maxBatchTokens: try capacity.int("maxBatchTokens"))
        }
    }

    /// A worker with what the control plane knows of it right now.
    struct WorkerDetail: ResponseEncodable {
        struct Telemetry: Encodable {
            /// Seconds since the last applied report; absent when none arrived since Fulcrum started.
            var ageSeconds: Double?
            var stale: Bool
            var lastSeq: Int?
            var duplicates: Int
            var report: TelemetryReport?
        }
        var worker: Worker
        var telemetry: Telemetry
        var ackedVersion: Int?
        /// How many state changes are recorded: the version an operator sends back in `If-Match`.
        var revision: Int
        var drain: DrainService.Drain?

        func encode(to encoder: any Encoder) throws {
            try worker.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(telemetry, forKey: .telemetry)
            try container.encodeIfPresent(ackedVersion, forKey: .ackedVersion)
            try container.encode(revision, forKey: .revision)
            try container.encodeIfPresent(drain, forKey: .drain)
        }

        enum Keys: String, CodingKey { case telemetry, ackedVersion, revision, drain }
    }

    struct WorkerList: ResponseEncodable {
        var workers: [Worker]
    }

    struct History: ResponseEncodable {
        var worker: String
        var changes: [WorkerStateChange]
    }

    @Sendable func register(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<Worker> {
        let id = try context.parameters.require("worker")
        try Identifier.validate(id, field: "worker")
        let body = try await request.parseJSON(limit: maxBodyBytes, RegistrationBody.init(json:))
        try scopes.check(worker: id, registeringIn: body.unit, context)
        let outcome = try await registry.register(
            WorkerRegistration(id: id, unit: body.unit, node: body.node, gpu: body.gpu, capacity: body.capacity))
        return EditedResponse(status: outcome.created ? .created : .ok, response: outcome.worker)
    }

    @Sendable func list(request: Request, context: FulcrumRequestContext) async throws -> WorkerList {
        // An empty value (`?unit=&state=`) means no filter, as forms and scripts send it.
        let query = request.uri.queryParameters
        let unit = query["unit"].flatMap { $0.isEmpty ? nil : String($0) }
        var state: WorkerState?
        if let raw = query["state"], !raw.isEmpty {
            guard let parsed = WorkerState(rawValue: String(raw)) else {
                throw APIError(
                    .badRequest, code: "invalid_field",
                    "state must be one of \(WorkerState.allCases.map(\.rawValue).joined(separator: ", "))",
                    field: "state")
            }
            state = parsed
        }
        return WorkerList(workers: try await registry.workers(unit: unit, state: state))
    }

    @Sendable func show(request: Request, context: FulcrumRequestContext) async throws -> EditedResponse<WorkerDetail> {
        let worker = try await registry.worker(context.parameters.require("worker"))
        let revision = try await registry.workerRevision(worker.id)
        return EditedResponse(
            status: .ok, headers: [.eTag: "\"\(revision)\""],
            response: Self.detail(of: worker, revision: revision, fleet: fleet, drains: drains, staleAfter: staleAfter))
    }

    static func detail(of worker: Worker, revision: Int, fleet: Fleet, drains: DrainService, staleAfter: Duration)
        -> WorkerDetail
    {
        let member = fleet.member(worker.id)?.member
        let (age, stale) = member.map { fleet.freshness(of: $0, staleAfter: staleAfter) } ?? (nil, true)
        return WorkerDetail(
            worker: worker,
            telemetry: .init(
                ageSeconds: age?.seconds, stale: stale, lastSeq: member?.lastSeq,
                duplicates: member?.duplicates ?? 0, report: member?.report),
            ackedVersion: member?.ackedVersion, revision: revision, drain: drains.drain(of: worker.id))
    }

    @Sendable func history(request: Request, context: FulcrumRequestContext) async throws -> History {
        let id = try context.parameters.require("worker")
        return History(worker: id, changes: try await registry.workerHistory(id))
    }
}

