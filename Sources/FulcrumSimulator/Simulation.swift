import Foundation
import FulcrumCore
import NIOCore
import NIOHTTP1
import Synchronization

/// A simulated DeepSeek-shaped cluster driving a real Fulcrum over its HTTP API, as real workers and gateways do:
/// registers the units and workers, runs each unit's engines in lock-step, each worker's telemetry and placement
/// poll, and a gateway replaying a trace's arrivals through both attention balancers. Failure scenarios strike on
/// schedule. Prints one line per interval and returns a report.
public final class Simulation: Sendable {
    public struct Settings: Sendable {
        public var target: String
        public var token: String?
        public var prefillUnits = 1
        public var decodeUnits = 1
        public var trace: Trace
        /// nil: the speed at which the busier phase runs at `autoUtilisation` of its capacity.
        public var speed: Double?
        public var autoUtilisation = 0.5
        /// nil: until `stop()`.
        public var duration: Double?
        /// After arrivals stop, how long to wait for the requests in flight to finish.
        public var drainTimeout = 120.0
        /// Outputs longer than this are cut to it, to keep a short run's drain short; nil keeps the trace's.
        public var maxOutputTokens: Int?
        public var telemetryInterval = 0.25
        public var printInterval = 5.0
        /// Each unit routes its tokens by the next real expert-load matrix every this many seconds.
        public var workloadPeriod = 30.0
        public var workloads: ExpertWorkloads
        /// Set as each simulated unit's policy (`PUT /v1/units/{unit}/policy`), so the expert-parallel balancer
        /// reacts within a short run; nil leaves the units' policies alone.
        public var rebalanceIntervalSeconds: Double? = 15
        public var windowSeconds: Double? = 30
        public var failures: [Failure] = []
        /// Unit ids start with it: `sim-p0`, `sim-d0`.
        public var prefix = "sim"
        /// Processes whose CPU and memory the report gives (Fulcrum's, when known).
        public var watched: [(label: String, pid: Int32)] = []

        public init(target: String, trace: Trace, workloads: ExpertWorkloads) {
            self.target = target
            self.trace = trace
            self.workloads = workloads
        }
    }

    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    let settings: Settings
    let endpoints: Endpoints
    private let stopped = Mutex(false)

    public init(_ settings: Settings) throws(SetupError) {
        let endpoints = try Endpoints(settings.target)
        guard settings.prefillUnits >= 1, settings.decodeUnits >= 1 else {
            throw SetupError(description: "a simulated cluster needs at least one prefill and one decode unit")
        }
        self.settings = settings
        self.endpoints = endpoints
    }

    /// Ends the run early: arrivals stop, nothing more is waited for, and `run` returns its report.
    public func stop() { stopped.withLock { $0 = true } }
    private var isStopped: Bool { stopped.withLock { $0 } }

    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> SimulationReport {
        let shape = ClusterShape(prefillUnits: settings.prefillUnits, decodeUnits: settings.decodeUnits, prefix: settings.prefix)
        let speed =
            settings.speed
            ?? TraceReplay.speed(
                for: settings.trace, maxOutputTokens: settings.maxOutputTokens, prefillGPUs: shape.units(.prefill).reduce(0) { $0 + $1.gpus },
                decodeGPUs: shape.units(.decode).reduce(0) { $0 + $1.gpus }, utilisation: settings.autoUtilisation)
        try await waitForFulcrum()
        progress(
            "simulating \(shape.units(.prefill).count) prefill x 32 + \(shape.units(.decode).count) decode x 144 GPUs "
                + "(\(shape.workers.count) workers) against \(settings.target); workload \(settings.trace.name) at "
                + "\(String(format: "%.2f", speed))x, expert load \(settings.workloads.origin)")
        let setup = SetupClient(endpoints: endpoints, token: settings.token)
        try await setup.register(shape, policy: policyBody)
        progress("registered \(shape.units.count) units and \(shape.workers.count) workers")

        let context = SimulationContext(
            endpoints: endpoints, token: settings.token, telemetryInterval: settings.telemetryInterval,
            started: .now)
        let gatewayBox = GatewayBox()
        var engines: [String: UnitEngine] = [:]
        for unit in shape.units {
            let routing = ExpertRouting(unit: unit, workload: settings.workloads.workload(for: unit, elapsed: 0, period: settings.workloadPeriod))
            engines[unit.id] =
                unit.role == .prefill
                ? .prefill(
                    SimulatedPrefillUnit(unit: unit, experts: routing, recorder: context.recorder) { gatewayBox.gateway?.prefilled($0) })
                : .decode(SimulatedDecodeUnit(unit: unit, experts: routing, recorder: context.recorder))
        }
        let gateway = Gateway(context: context, engines: engines)
        gatewayBox.gateway = gateway
        let controls = Dictionary(uniqueKeysWithValues: shape.workers.map { ($0.id, WorkerControl()) })
        let watchedBefore = settings.watched.map { ($0.label, $0.pid, ProcessFigures(pid: $0.pid)) }
        let selfBefore = ProcessFigures(pid: getpid())

        let run = RunState()
        var finishedSample: [String] = []
        var placements: (units: [String: SetupClient.Verification.UnitStatus], problems: [String]) = ([:], [])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for engine in engines.values { group.addTask { await engine.run() } }
            for worker in shape.workers {
                guard let engine = engines[worker.unit.id], let control = controls[worker.id] else { continue }
                group.addTask { await VirtualWorker(worker: worker, engine: engine, control: control, context: context).run() }
            }
            group.addTask { await gateway.lane(.prefill) }
            group.addTask { await gateway.lane(.decode) }
            finishedSample = try await drive(
                shape: shape, speed: speed, context: context, gateway: gateway, engines: engines, controls: controls,
                run: run, group: &group, progress: progress)
            placements = await setup.settledPlacements(shape, wait: isStopped ? 0 : 10)
            group.cancelAll()
        }

        let elapsed = context.elapsed
        var processes: [SimulationReport.Process] = []
        for (label, pid, before) in watchedBefore {
            if let before, let after = ProcessFigures(pid: pid) {
                processes.append(.init(label: label, cpuCores: (after.cpuSeconds - before.cpuSeconds) / elapsed, rssMiB: after.rssMiB))
            }
        }
        if let selfBefore, let after = ProcessFigures(pid: getpid()) {
            processes.append(
                .init(label: "simulator (this process)", cpuCores: (after.cpuSeconds - selfBefore.cpuSeconds) / elapsed, rssMiB: after.rssMiB))
        }
        let verification = await setup.verify(shape, placements: placements, finishedSample: finishedSample, failures: run.failures())
        return ReportBuilder(
            settings: settings, shape: shape, speed: speed, context: context, gateway: gateway, run: run,
            verification: verification, processes: processes, elapsed: elapsed, stoppedEarly: isStopped
        ).report()
    }

    private var policyBody: String? {
        var members: [String] = []
        if let interval = settings.rebalanceIntervalSeconds { members.append(#""rebalanceIntervalSeconds": \#(interval.compact)"#) }
        if let window = settings.windowSeconds { members.append(#""windowSeconds": \#(window.compact)"#) }
        return members.isEmpty ? nil : #"{"policy": {\#(members.joined(separator: ", "))}, "reason": "fulcrum simulate"}"#
    }

    /// Waits up to 30 s for a replica whose `/readyz` says it leads and can serve (Fulcrum may be starting beside
    /// us, or loading its state), or until stopped (a Fulcrum that could not start stops us at once).
    private func waitForFulcrum() async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if isStopped { throw SetupError(description: "stopped before Fulcrum at \(settings.target) was ready") }
            let outcome: String
            let endpoint = endpoints.current
            do {
                let status = try await HTTPConnection.with(endpoints: endpoints, token: settings.token) {
                    try await $0.send(.GET, "/readyz").status
                }
                if status == .ok { return }
                outcome = "/readyz of \(endpoint) answered \(status.code)"
                // Starting, or a standby that knows no leader yet: another target may be ready.
                endpoints.unreachable(endpoint)
            } catch is HTTPConnection.NotLeader {
                continue
            } catch {
                outcome = "\(endpoint): \(error)"
            }
            if ContinuousClock.now > deadline {
                throw SetupError(description: "Fulcrum at \(settings.target) was not ready within 30 s: \(outcome)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The run's clock: arrivals, workload switches, failures, detection of killed workers, one line per print
    /// interval; then the drain. Returns the sample of finished requests whose finish has reached Fulcrum.
    private func drive(
        shape: ClusterShape, speed: Double, context: SimulationContext, gateway: Gateway, engines: [String: UnitEngine],
        controls: [String: WorkerControl], run: RunState, group: inout ThrowingTaskGroup<Void, any Error>,
        progress: @escaping @Sendable (String) -> Void
    ) async throws -> [String] {
        var replay = TraceReplay(
            trace: settings.trace, speed: speed, tag: "\(settings.prefix)-\(Self.runTag())", maxOutputTokens: settings.maxOutputTokens)
        var pendingFailures = settings.failures.sorted { $0.at < $1.at }
        let clock = ContinuousClock()
        var nextSecond = context.started + .seconds(1)
        var nextPrint = context.started + .seconds(settings.printInterval)
        var arrivalsOpen = true
        var drainDeadline: ContinuousClock.Instant?
        while !isStopped, !Task.isCancelled {
            let elapsed = context.elapsed
            if arrivalsOpen {
                if let duration = settings.duration, elapsed >= duration {
                    arrivalsOpen = false
                    context.recorder.stopBalanceTotals()
                    drainDeadline = clock.now + .seconds(settings.drainTimeout)
                    progress(
                        "\(Self.clockText(elapsed))  arrivals stopped; waiting up to \(settings.drainTimeout.compact) s for the requests in flight")
                } else {
                    let due = replay.due(by: elapsed, start: context.started)
                    if !due.isEmpty {
                        gateway.arrive(due)
                    }
                }
            }
            while let failure = pendingFailures.first, failure.at <= elapsed {
                pendingFailures.removeFirst()
                guard let worker = failure.target(in: shape), let engine = engines[worker.unit.id],
                    let control = controls[worker.id]
                else {
                    progress("failure \(failure): no such worker in this cluster; skipped")
                    continue
                }
                run.struck(failure, worker: worker.id, at: elapsed)
                switch failure.kind {
                case .kill:
                    control.kill()
                    gateway.killed(worker.id)
                    gateway.lost(engine.kill(rank: worker.rank))
                    let setup = SetupClient(endpoints: endpoints, token: settings.token)
                    group.addTask {
                        await setup.watchDeath(of: worker.id, control: control, gateway: gateway, run: run, context: context)
                    }
                case .slow: engine.slow(rank: worker.rank, by: failure.amount)
                case .delay: control.telemetryDelay = failure.amount
                }
                progress("\(Self.clockText(elapsed))  FAILURE \(failure.kind.rawValue): \(worker.id) \(failure.detailText)")
            }
            if clock.now >= nextSecond {
                nextSecond += .seconds(1)
                for engine in engines.values {
                    engine.experts.use(settings.workloads.workload(for: engine.unit, elapsed: elapsed, period: settings.workloadPeriod))
                    run.expertSample(engine.experts.measure().balancedness)
                }
            }
            if clock.now >= nextPrint {
                nextPrint += .seconds(settings.printInterval)
                let point = run.closeInterval(at: elapsed, context: context, shape: shape, engines: engines, controls: controls)
                progress(Self.line(point, recorder: context.recorder))
            }
            if let drainDeadline {
                let totals = context.recorder.totals().counts
                if totals.finished >= totals.arrived, gateway.waiting == 0 { break }
                if clock.now >= drainDeadline {
                    progress("drain timed out with \(totals.arrived - totals.finished) requests unfinished")
                    break
                }
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        // Let the workers' next reports carry the finishes so far to Fulcrum (the engines go on meanwhile: only
        // requests finished before the wait are read back).
        let sample = context.recorder.finishedSample
        try await Task.sleep(for: .seconds(settings.telemetryInterval * 2 + 0.3))
        let point = run.closeInterval(at: context.elapsed, context: context, shape: shape, engines: engines, controls: controls)
        progress(Self.line(point, recorder: context.recorder))
        return sample
    }

    static func runTag() -> String {
        var generator = SystemRandomNumberGenerator()
        return String((0..<4).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement(using: &generator) ?? "x" })
    }

    static func clockText(_ seconds: Double) -> String { String(format: "%5.0fs", seconds) }

    static func line(_ point: SimulationReport.Point, recorder: SimulationRecorder) -> String {
        func ratio(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "  - " }
        let totals = recorder.totals()
        func p99(_ call: SimulationRecorder.Call) -> String {
            guard let values = totals.latencies[call], !values.isEmpty else { return "-" }
            return String(format: "%.1f", percentile(values.suffix(20_000).sorted(), 0.99) * 1e3)
        }
        return "\(clockText(point.seconds))  requests \(point.arrived) in, \(point.finished) done, \(point.inFlight) in flight"
            + " | prefill \(ratio(point.prefillEfficiency)) decode \(ratio(point.decodeEfficiency))"
            + " experts \(ratio(point.expertBalancedness))"
            + " | placement v\(point.placementVersion) on \(point.workersOnNewest)/\(point.liveWorkers)"
            + " | p99 ms telemetry \(p99(.telemetry)) assign \(p99(.prefillAssignment))/\(p99(.decodeAssignment))"
            + " | errors \(point.errors)"
    }
}

/// Lets the prefill engines reach the gateway, which is built after them.
final class GatewayBox: Sendable {
    private let box = Mutex<Gateway?>(nil)
    var gateway: Gateway? {
        get { box.withLock { $0 } }
        set { box.withLock { $0 = newValue } }
    }
}

extension Failure {
    var detailText: String {
        switch kind {
        case .kill: "stops reporting and polling; its requests are lost and sent again"
        case .slow: "now steps \(amount.compact)x slower"
        case .delay: "reports now arrive \(amount.compact) s late"
        }
    }
}
