import FulcrumCore
import Hummingbird

/// `/v1/workers`: GPU workers register themselves; operators list and inspect them.
struct WorkersController {
    let registry: RegistryService
    let fleet: Fleet
    let staleAfter: Duration
    let maxBodyBytes: Int

    func addRoutes(to group: RouterGroup<FulcrumRequestContext>) {
        group.get(use: list)
        group.put(":worker", use: register)
        group.get(":worker", use: show)
        group.get(":worker/history", use: history)
    }

    /// The body of `PUT /v1/workers/{worker}`; the id comes from the path.
    struct RegistrationBody: Decodable {
        var unit: String
        var node: Int
        var gpu: Int
        var capacity: WorkerCapacity
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

        func encode(to encoder: any Encoder) throws {
            try worker.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(telemetry, forKey: .telemetry)
            try container.encodeIfPresent(ackedVersion, forKey: .ackedVersion)
        }

        enum Keys: String, CodingKey { case telemetry, ackedVersion }
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
        let body = try await request.decodeJSON(RegistrationBody.self, limit: maxBodyBytes)
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

    @Sendable func show(request: Request, context: FulcrumRequestContext) async throws -> WorkerDetail {
        let worker = try await registry.worker(context.parameters.require("worker"))
        let member = fleet.member(worker.id)?.member
        let (age, stale) = member.map { fleet.freshness(of: $0, staleAfter: staleAfter) } ?? (nil, true)
        return WorkerDetail(
            worker: worker,
            telemetry: .init(
                ageSeconds: age?.seconds, stale: stale, lastSeq: member?.lastSeq,
                duplicates: member?.duplicates ?? 0, report: member?.report),
            ackedVersion: member?.ackedVersion)
    }

    @Sendable func history(request: Request, context: FulcrumRequestContext) async throws -> History {
        let id = try context.parameters.require("worker")
        return History(worker: id, changes: try await registry.workerHistory(id))
    }
}

