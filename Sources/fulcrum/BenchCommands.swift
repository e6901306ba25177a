import ArgumentParser
import FulcrumBench
import FulcrumCore
import FulcrumSimulator
import Foundation

/// `fulcrum bench balance`: its flags, checked, for `BalanceBenchmark` (FulcrumBench), which runs it.
struct BalanceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balance",
        abstract: "Attention balancers on built-in and replayed workloads: lock-step efficiency, TTFT and decode step time, side by side.",
        usage: "fulcrum bench balance [<options>]")

    @Option(
        help: ArgumentHelp(
            "Directory of the real third-party data (mooncake/, azure_llm_2023/, servegen_deepseek_r1/): its traces run after the built-in workloads. [env: FULCRUM_DATA]",
            valueName: "dir"))
    var data: String?

    @Option(
        help: """
            Simulated seconds a prefill run; a decode run takes a third (its steps are far shorter). Default 600, 120 \
            with --quick.
            """)
    var duration: Double?

    @Flag(help: "A short run (a few seconds of wall time), for a smoke test.")
    var quick = false

    @Option(
        help: """
            Shortest decode step, ms. 0 (default) is the issue's cost model, where a step costs only its work; 50 gives \
            DeepSeek's operating point below saturation.
            """)
    var decodeStepFloorMs = 0.0

    @Option(help: "Seconds a decode request may be held back before it goes wherever there is room (0: never held).")
    var decodeHoldLimit = DecodeBalancer.holdLimit

    @Option(help: "Seed of every random choice (the built-in workloads, ServeGen lengths, power-of-two draws).")
    var seed: UInt64 = 1

    @Flag(
        help: """
            The robustness matrix instead of the tables: every policy on every workload under control loops from \
            10 ms to 2 s a step, reports every 1 to 10 steps, up to 500 ms of forwarding delay, with and without \
            admitted, tokensPerSecond and hold-back support.
            """)
    var matrix = false

    @Option(help: "Seed of the matrix's random workload (default: a fresh one each run, printed).")
    var randomSeed: UInt64?

    @Option(help: ArgumentHelp(
        "With --matrix: only the workloads whose role and name, as 'decode random-140945', contain this text.",
        valueName: "text"))
    var only: String?

    func validate() throws {
        if let data = WorkloadCatalog.dataDirectory(data) {
            for path in BenchTraces.recorded.map({ "\(data)/\($0)" })
            where !FileManager.default.fileExists(atPath: path) {
                throw ValidationError(
                    "cannot read \(path): --data (or FULCRUM_DATA) turns on the real traces and must name a directory "
                        + "holding \(BenchTraces.recorded.joined(separator: ", "))")
            }
        }
        if let duration, !(10...86_400).contains(duration) {
            throw ValidationError("--duration must be 10 to 86400 simulated seconds")
        }
        guard (0...3_600).contains(decodeHoldLimit) else {
            throw ValidationError("--decode-hold-limit must be 0 to 3600 seconds")
        }
        guard (0...10_000).contains(decodeStepFloorMs) else {
            throw ValidationError("--decode-step-floor-ms must be 0 to 10000")
        }
        // The matrix sets its own loops and lengths: options of the tables would be silently ignored there.
        if matrix {
            let ignored = [
                duration.map { _ in "--duration" }, decodeStepFloorMs != 0 ? "--decode-step-floor-ms" : nil,
                decodeHoldLimit != DecodeBalancer.holdLimit ? "--decode-hold-limit" : nil,
            ].compactMap { $0 }
            if !ignored.isEmpty {
                throw ValidationError("--matrix does not use \(ignored.joined(separator: ", ")) (options of the tables)")
            }
        } else if randomSeed != nil || only != nil {
            throw ValidationError("--random-seed and --only apply only with --matrix")
        }
    }

    func run() async throws {
        var bench = BalanceBenchmark()
        bench.data = WorkloadCatalog.dataDirectory(data)
        bench.duration = duration
        bench.quick = quick
        bench.decodeStepFloorMs = decodeStepFloorMs
        bench.decodeHoldLimit = decodeHoldLimit
        bench.seed = seed
        bench.randomSeed = randomSeed
        bench.only = only
        if matrix { try await bench.runMatrix() } else { try await bench.runTables() }
    }
}

/// `fulcrum bench eplb`: its flags, checked, for `EPLBBenchmark` (FulcrumBench), which runs it.
struct EPLBBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eplb", abstract: "Balance and solve time of the expert placement on DeepSeek-V3-shaped loads.")

    @Option(help: "builtin (default: the seeded model), deepseek-v3 (the real dumps, with --data), or a directory of SGLang expert-distribution dumps.")
    var expertLoad = "builtin"

    @Option(help: ArgumentHelp("Directory of the real third-party data (expert_load/deepseek_v3/). [env: FULCRUM_DATA]", valueName: "dir"))
    var data: String?

    @Option(help: "Seed of the built-in expert load.")
    var seed: UInt64 = 1

    @Option(help: "Timed repetitions of each solve.")
    var repetitions = 20

    @Option(help: ArgumentHelp(
        "The re-planner's price of a move: the least peak reduction per moved replica, as a share of the layer's mean GPU load.",
        valueName: "share"))
    var minGainPerMove = RebalancePlanner.minGainPerMove

    @Flag(help: "Only the re-planning tables (drift, Pareto, times), not the solver table.")
    var movementOnly = false

    func validate() throws {
        guard minGainPerMove.isFinite, (0...1).contains(minGainPerMove) else {
            throw ValidationError("--min-gain-per-move must be a share from 0 to 1; got \(minGainPerMove)")
        }
        do {
            try WorkloadCatalog.check(workload: "builtin", expertLoad: expertLoad, data: WorkloadCatalog.dataDirectory(data))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        var bench = EPLBBenchmark()
        bench.expertLoad = expertLoad
        bench.data = WorkloadCatalog.dataDirectory(data)
        bench.seed = seed
        bench.repetitions = repetitions
        bench.minGainPerMove = minGainPerMove
        bench.movementOnly = movementOnly
        try await bench.run()
    }
}

/// `fulcrum bench workloads`: its flags, checked, for `WorkloadsBenchmark` (FulcrumBench), which runs it.
struct WorkloadsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workloads", abstract: "Figures of the built-in workload models, beside the real data's when given.",
        usage: "fulcrum bench workloads [<options>]")

    @Option(help: "Seed of the built-in models.")
    var seed: UInt64 = 1

    @Option(help: "Requests drawn from each request model (1000 to 10000000).")
    var count = 100_000

    @Option(help: ArgumentHelp("Directory of the real third-party data, to compare with. [env: FULCRUM_DATA]", valueName: "dir"))
    var data: String?

    func validate() throws {
        guard (1_000...10_000_000).contains(count) else { throw ValidationError("--count must be 1000 to 10000000") }
        if let data = WorkloadCatalog.dataDirectory(data) {
            do {
                for name in WorkloadsBenchmark.counterparts.values { try WorkloadCatalog.check(workload: name, expertLoad: "builtin", data: data) }
                try WorkloadCatalog.check(workload: "builtin", expertLoad: WorkloadCatalog.recordedExpertLoad.name, data: data)
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }

    func run() async throws {
        var bench = WorkloadsBenchmark()
        bench.seed = seed
        bench.count = count
        bench.data = WorkloadCatalog.dataDirectory(data)
        try await bench.run()
    }
}

/// `fulcrum bench assign`: its flags, checked, for `AssignBenchmark` (FulcrumBench), which runs it.
struct AssignBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assign", abstract: "Load the attention balancers: prefill and decode assignment batches over HTTP.",
        usage: "fulcrum bench assign [<options>]")

    @OptionGroup var server: BenchTarget

    @Option(help: "Workers to register; DeepSeek's peak was 278 nodes x 8 GPUs.")
    var workers = 2_224

    @Option(help: "Requests per batch.")
    var batch = 256

    @Option(help: "Connections sending batches (half prefill, half decode).")
    var connections = 16

    @Option(help: "Seconds of load.")
    var duration = 20.0

    func validate() throws {
        guard (2...20_000).contains(workers) else { throw ValidationError("--workers must be 2...20000") }
        guard (1...4_096).contains(batch) else { throw ValidationError("--batch must be 1...4096") }
        guard (2...1_024).contains(connections) else { throw ValidationError("--connections must be 2...1024") }
        guard duration > 0, duration <= 3_600 else { throw ValidationError("--duration must be in (0, 3600]") }
    }

    func run() async throws {
        var bench = AssignBenchmark()
        (bench.host, bench.port, bench.serverPID) = (server.host, server.port, server.serverPid)
        bench.workers = workers
        bench.batch = batch
        bench.connections = connections
        bench.duration = duration
        if try await !bench.run() { throw ExitCode(1) }
    }
}

/// `fulcrum bench protocol`: its flags, checked, for `ProtocolBenchmark` (FulcrumBench), which runs it.
struct ProtocolBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protocol",
        abstract: "Load the worker protocol: telemetry from every worker, long polls, a placement publish.",
        usage: "fulcrum bench protocol [<options>]")

    @OptionGroup var server: BenchTarget

    @Option(help: "Workers to simulate; DeepSeek's peak was 278 nodes x 8 GPUs.")
    var workers = 2_224

    @Option(help: "Telemetry reports per worker per second.")
    var rate = 10.0

    @Option(help: "Seconds of telemetry.")
    var duration = 30.0

    @Option(help: "Seconds into the telemetry at which every unit gets a new placement.")
    var publishAt = 10.0

    @Option(help: "Connections that carry telemetry (each worker's reports go over one of them, in turn).")
    var connections = 128

    @Option(help: "Also write the figures as JSON to this file.")
    var report: String?

    func validate() throws {
        guard (1...20_000).contains(workers) else { throw ValidationError("--workers must be 1...20000") }
        guard rate > 0, rate <= 100 else { throw ValidationError("--rate must be in (0, 100]") }
        guard duration > 0, duration <= 3_600 else { throw ValidationError("--duration must be in (0, 3600]") }
        guard publishAt >= 0, publishAt < duration else { throw ValidationError("--publish-at must be within the run") }
        guard (1...4_096).contains(connections) else { throw ValidationError("--connections must be 1...4096") }
    }

    func run() async throws {
        var bench = ProtocolBenchmark()
        (bench.host, bench.port, bench.serverPID) = (server.host, server.port, server.serverPid)
        bench.workers = workers
        bench.rate = rate
        bench.duration = duration
        bench.publishAt = publishAt
        bench.connections = connections
        let figures = try await bench.run()
        print(figures.text)
        if let report {
            try JSONEncoder().encode(figures).write(to: URL(fileURLWithPath: report))
        }
        if !figures.passed { throw ExitCode(1) }
    }
}
