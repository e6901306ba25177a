import FulcrumSimulator
import FulcrumCore
import Foundation

/// `fulcrum bench balance`: the attention balancers in a discrete-time simulation of a prefill unit (32 ranks) and
/// a decode unit (144 ranks) in lock-step, replaying the built-in workloads (and the real traces when `--data` names
/// them), five policies on the same arrivals.
///
/// Saturated runs (1.3x the ideal capacity: a standing backlog) measure lock-step efficiency. The ideal capacity
/// is a perfectly balanced unit's, every rank busy, `ranks x costPerSecond` of step cost a second, against the step
/// cost the requests bring (exact for prefill however prompts are chunked; in decode each output token costs 1 +
/// its context / 14,800). Runs at 85% measure prefill time to first token and decode step time, at 85% of what the
/// unit got through a second when saturated under the clairvoyant reference: on traces whose long prompts keep
/// any placement far from the ideal, 85% of the ideal would be an overload.
public struct BalanceBenchmark: Sendable {
    /// The real data's directory: its traces run after the built-in workloads.
    public var data: String?
    /// Simulated seconds a prefill run (a decode run takes a third); nil: 600, or 120 when quick.
    public var duration: Double?
    public var quick = false
    /// Shortest decode step, ms (0: a step costs only its work).
    public var decodeStepFloorMs = 0.0
    public var decodeHoldLimit = DecodeBalancer.holdLimit
    public var seed: UInt64 = 1
    /// The matrix's random workload; nil: a fresh one each run, printed.
    public var randomSeed: UInt64?
    /// With the matrix: only the workloads whose role and name contain this text.
    public var only: String?

    public init() {}

    /// Part of each run left out of the measurements while queues and running batches build up.
    static let warmUp = 0.2
    static let saturated = 1.3
    static let operating = 0.85

    /// The tables: every policy on every workload, saturated and at the operating point, and the targets.
    public func runTables() async throws {
        let prefillSeconds = duration ?? (quick ? 120 : 600)
        let decodeSeconds = prefillSeconds / 3
        let started = ContinuousClock.now
        let traces = try BenchTraces(data: WorkloadCatalog.dataDirectory(data), seed: seed, quick: quick)
        print(
            """
            fulcrum bench balance: \(Int(prefillSeconds)) s a prefill run, \(Int(decodeSeconds)) s a decode run \
            (simulated), first \(Int(Self.warmUp * 100))% not measured; seed \(seed)
            prefill: \(PrefillSimulation.ranks) ranks, \(PrefillSimulation.budget) new tokens a step, \
            step s = max rank cost / \(Int(PrefillSimulation.costPerSecond))
            decode: \(DecodeSimulation.ranks) ranks, KV \(DecodeSimulation.kvCapacity) tokens a rank, \
            step s = max rank cost / \(Int(DecodeSimulation.costPerSecond.rounded()))\
            \(decodeStepFloorMs > 0 ? ", at least \(decodeStepFloorMs) ms" : "")
            cost = tokens (prefill) or running requests (decode) + attended pairs / 14,800; telemetry every 100 ms, \
            gateway batches every 10 ms
            """)
        let prefillRows = Self.prefillRows(traces.prefill, seconds: prefillSeconds, seed: seed)
        BalanceTable.print(title: "prefill", prefillRows)
        let decodeRows = Self.decodeRows(
            traces.decode, seconds: decodeSeconds, floor: decodeStepFloorMs / 1000, holdLimit: decodeHoldLimit, seed: seed)
        BalanceTable.print(title: "decode", decodeRows)

        let solve = BalanceSolverBench.run(
            decodeTrace: traces.decode[0], prefillTrace: traces.prefill[0], repetitions: 50, seed: seed)
        print("")
        print(
            String(
                format: "solver, batch of %d, median of 50: DecodeBalancer.assign %.2f µs a request (144 ranks), "
                    + "PrefillBalancer.assign %.2f µs a request (32 ranks); target <= 5", BalanceSolverBench.batch,
                solve.decode, solve.prefill))
        BalanceTable.printTargets(prefill: prefillRows, decode: decodeRows, solve: solve)
        let elapsed = ContinuousClock.now - started
        print("wall time \(elapsed.components.seconds) s")
    }

    /// The robustness matrix: every policy on every workload under every control loop, and the targets.
    public func runMatrix() async throws {
        let started = ContinuousClock.now
        let randomSeed = randomSeed ?? UInt64.random(in: 1...999_999)
        let (prefillSteps, decodeSteps) = quick ? (120.0, 400.0) : (400.0, 1_500.0)
        let count = quick ? 20_000 : 100_000
        let traces = try BenchTraces(data: WorkloadCatalog.dataDirectory(data), seed: seed, quick: quick)
        print(
            """
            fulcrum bench balance --matrix: seed \(seed), random workload seed \(randomSeed) (rerun it with \
            --random-seed \(randomSeed)); \(Int(prefillSteps)) prefill / \(Int(decodeSteps)) decode steps a run, \
            first \(Int(Self.warmUp * 100))% not measured
            prefill: \(PrefillSimulation.ranks) ranks, \(PrefillSimulation.budget) new tokens a step, arrivals 1.3x \
            the token budget; decode: \(DecodeSimulation.ranks) ranks, KV \(DecodeSimulation.kvCapacity) a rank, \
            arrivals 1.3x the KV cache; efficiency = Σ mean rank cost / Σ max rank cost
            """)
        for workload in SyntheticWorkload.families + [.random(seed: randomSeed)] { print("  \(workload)") }
        var lines: [(String, Bool)] = []
        for role in [BalanceMatrix.Role.prefill, .decode] {
            let real = role == .prefill ? Array(traces.prefill.dropFirst(3)) : Array(traces.decode.dropFirst(2))
            let workloads = BalanceMatrix.workloads(role, count: count, seed: seed, randomSeed: randomSeed, real: real)
                .filter { trace in only.map { "\(role.rawValue) \(trace.name)".contains($0) } ?? true }
            guard !workloads.isEmpty else { continue }
            let cells = await BalanceMatrix.cells(
                role, traces: workloads, steps: role == .prefill ? prefillSteps : decodeSteps, seed: seed)
            BalanceMatrix.print(role, cells)
            lines += BalanceMatrix.targets(role, cells)
        }
        print("")
        print("targets")
        for (line, _) in lines { print("  \(line)") }
        print("wall time \((ContinuousClock.now - started).components.seconds) s")
    }

    /// Each trace saturated, then at 85% of the capacity the saturated reference showed.
    static func prefillRows(_ traces: [Trace], seconds: Double, seed: UInt64) -> [BalanceTable.Row] {
        let window = (seconds * warmUp)..<seconds
        return traces.flatMap { trace -> [BalanceTable.Row] in
            let saturated = BalanceArrivals.scaled(
                trace, cost: BalanceArrivals.prefillCost, capacity: PrefillSimulation.capacity, load: Self.saturated,
                duration: seconds, horizon: seconds)
            let busy = BalancePolicy.allCases.map {
                prefill($0, arrivals: saturated, window: window, drain: false, maxDrain: 0, seed: seed)
            }
            let capacity = busy[BalanceTable.policyIndex(.clairvoyant)].throughput
            // Arrivals go on after the window at the same load, so the window's requests drain as they would.
            let operating = BalanceArrivals.scaled(
                trace, cost: BalanceArrivals.prefillCost, capacity: capacity, load: Self.operating, duration: seconds,
                horizon: seconds * 3)
            let calm = BalancePolicy.allCases.map {
                prefill($0, arrivals: operating, window: window, drain: true, maxDrain: seconds * 2, seed: seed)
            }
            return [
                BalanceTable.prefillRow(trace: trace.name, load: Self.saturated, busy),
                BalanceTable.prefillRow(
                    trace: trace.name, load: Self.operating, calm, capacity: capacity / PrefillSimulation.capacity),
            ]
        }
    }

    /// Each trace saturated (its KV cache filled during the warm-up), then at 85% of the capacity the saturated
    /// reference showed.
    static func decodeRows(
        _ traces: [Trace], seconds: Double, floor: Double, holdLimit: Double, seed: UInt64
    ) -> [BalanceTable.Row] {
        let window = (seconds * warmUp)..<seconds
        return traces.flatMap { trace -> [BalanceTable.Row] in
            let fill = BalanceArrivals.fill(trace, tokens: Double(DecodeSimulation.ranks * DecodeSimulation.kvCapacity))
            let saturated = BalanceArrivals.merge(
                fill, over: window.lowerBound * 0.75,
                into: BalanceArrivals.scaled(
                    trace, cost: BalanceArrivals.decodeCost, capacity: DecodeSimulation.capacity, load: Self.saturated,
                    duration: seconds, horizon: seconds))
            let busy = BalancePolicy.allCases.map {
                decode($0, arrivals: saturated, window: window, floor: floor, holdLimit: holdLimit, seed: seed)
            }
            let capacity = busy[BalanceTable.policyIndex(.clairvoyant)].throughput
            let operating = BalanceArrivals.scaled(
                trace, cost: BalanceArrivals.decodeCost, capacity: capacity, load: Self.operating, duration: seconds,
                horizon: seconds)
            let calm = BalancePolicy.allCases.map {
                decode($0, arrivals: operating, window: window, floor: floor, holdLimit: holdLimit, seed: seed)
            }
            return [
                BalanceTable.decodeRow(trace: trace.name, load: Self.saturated, busy),
                BalanceTable.decodeRow(
                    trace: trace.name, load: Self.operating, calm, capacity: capacity / DecodeSimulation.capacity),
            ]
        }
    }

    static func prefill(
        _ policy: BalancePolicy, arrivals: [Arrival], window: Range<Double>, drain: Bool, maxDrain: Double, seed: UInt64
    ) -> PrefillRunResult {
        BalanceRuns.prefill(policy, arrivals: arrivals, window: window, loop: .standard(), drain: drain, maxDrain: maxDrain, seed: seed)
    }

    static func decode(
        _ policy: BalancePolicy, arrivals: [Arrival], window: Range<Double>, floor: Double, holdLimit: Double,
        seed: UInt64
    ) -> DecodeRunResult {
        BalanceRuns.decode(
            policy, arrivals: arrivals, window: window, loop: .standard(decodeFloor: floor), holdLimit: holdLimit, seed: seed)
    }
}

/// One run of one policy: the router it names, on the simulation, under a control loop.
enum BalanceRuns {
    /// The assignment book's memory. The service forgets ids after 600 s of wall time; a run of 2 s steps stretches
    /// a request's life 40-fold, so here nothing is forgotten by age, only past the service's million ids (more than
    /// a run assigns).
    static let memory = Double.greatestFiniteMagnitude
    static let memoryLimit = 1_000_000

    static func prefill(
        _ policy: BalancePolicy, arrivals: [Arrival], window: Range<Double>, loop: ControlLoop, drain: Bool = false,
        maxDrain: Double = 0, seed: UInt64
    ) -> PrefillRunResult {
        let (ranks, budget) = (PrefillSimulation.ranks, PrefillSimulation.budget)
        func run(_ router: some PrefillRouting) -> PrefillRunResult {
            PrefillSimulation.run(router, arrivals: arrivals, window: window, loop: loop, drain: drain, maxDrain: maxDrain)
        }
        switch policy {
        case .fulcrum: return run(FulcrumPrefillRouter(ranks: ranks, budget: budget))
        case .clairvoyant: return run(ClairvoyantPrefillRouter(ranks: ranks, budget: budget))
        default: return run(CountingRouter(rule: policy, ranks: ranks, seed: seed))
        }
    }

    static func decode(
        _ policy: BalancePolicy, arrivals: [Arrival], window: Range<Double>, loop: ControlLoop,
        holdLimit: Double = DecodeBalancer.holdLimit, seed: UInt64
    ) -> DecodeRunResult {
        let (ranks, capacity) = (DecodeSimulation.ranks, DecodeSimulation.kvCapacity)
        func run(_ router: some DecodeRouting) -> DecodeRunResult {
            DecodeSimulation.run(router, arrivals: arrivals, window: window, loop: loop)
        }
        switch policy {
        case .fulcrum:
            return run(FulcrumDecodeRouter(ranks: ranks, capacity: capacity, holding: DecodeHolds(limit: holdLimit)))
        case .clairvoyant:
            return run(ClairvoyantDecodeRouter(capacity: capacity, holding: DecodeHolds(limit: holdLimit)))
        default: return run(CountingRouter(rule: policy, ranks: ranks, seed: seed))
        }
    }
}

/// The workloads each phase replays: the built-in models always, then the real traces when there is a data
/// directory.
public struct BenchTraces {
    var prefill: [Trace]
    var decode: [Trace]

    static let serveGen = "servegen_deepseek_r1"

    /// What `--data` must hold: the catalogue's traces this benchmark replays, and ServeGen's distributions.
    public static let recorded =
        WorkloadCatalog.recorded.filter { ["azure-code", "azure-conv", "mooncake"].contains($0.name) }.map(\.path)
        + [serveGen]

    init(data: String?, seed: UInt64, quick: Bool) throws {
        let count = quick ? 20_000 : 100_000
        prefill = [RequestModel.longContext, .code, .conversation].map { $0.trace(count: count, seed: seed) }
        // Code completion's outputs (28 tokens on average) barely decode; reasoning and conversation do.
        decode = [RequestModel.reasoning, .conversation].map { $0.trace(count: count, seed: seed) }
        guard let data else { return }
        let azureConv = try WorkloadCatalog.requests("azure-conv", data: data, seed: seed)
        var mooncake = try WorkloadCatalog.requests("mooncake", data: data, seed: seed)
        mooncake.name = "mooncake-conv"
        prefill += [mooncake, try WorkloadCatalog.requests("azure-code", data: data, seed: seed), azureConv]
        decode += [
            try BalanceTraces.serveGen("\(data)/\(Self.serveGen)", name: "servegen-r1", count: count, seed: seed),
            azureConv,
        ]
    }
}
