import ArgumentParser
import Foundation
import FulcrumCore
import FulcrumServer
import FulcrumSimulator

/// A progress line, written at once (`print` buffers whole blocks when stdout is a pipe or a file).
@Sendable func printLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The simulated cluster's settings, shared by `fulcrum simulate` and `fulcrum serve --simulate`.
struct SimulationOptions: ParsableArguments {
    @Option(help: "Prefill units of 4 nodes x 8 GPUs.")
    var prefillUnits = 1

    @Option(help: "Decode units of 18 nodes x 8 GPUs.")
    var decodeUnits = 1

    @Option(
        name: [.customLong("workload"), .customLong("trace")],
        help: ArgumentHelp(
            "builtin (default), builtin-code, builtin-long, builtin-reasoning; azure-conv, azure-code, mooncake, mooncake-synthetic (with --data); or a Mooncake .jsonl or Azure .csv file.",
            discussion: "The built-in workloads are seeded models of the public traces' statistics and need no files."))
    var workload = "builtin"

    @Option(help: "builtin (default: a seeded model of DeepSeek-V3's expert load), deepseek-v3 (the real dumps, with --data), or a directory of SGLang expert-distribution dumps.")
    var expertLoad = "builtin"

    @Option(help: "Seed of the built-in workload and expert load.")
    var seed: UInt64 = 1

    @Option(help: "Directory of the real third-party data (azure_llm_2023/, mooncake/, expert_load/deepseek_v3/). [env: FULCRUM_DATA]")
    var data: String?

    @Option(help: "Replay the workload this many times faster than recorded (default: the speed that loads the busier phase to half the cluster's capacity).")
    var speed: Double?

    @Option(help: "How long arrivals run (e.g. 60s, 5m); the requests in flight then finish.")
    var duration: String?

    @Option(help: "Cut longer outputs to this many tokens (a short run's drain stays short); default: the workload's.")
    var maxOutputTokens: Int?

    @Option(help: "Each worker reports this often.")
    var telemetryInterval = "250ms"

    @Option(help: "One progress line this often.")
    var printInterval = "5s"

    @Option(help: "Each unit routes its tokens by the next expert-load workload this often.")
    var workloadPeriod = "30s"

    @Option(help: "Set as each simulated unit's policy: how often the expert-parallel balancer re-solves.")
    var unitRebalanceInterval = "15s"

    @Option(help: "Set as each simulated unit's policy: the expert-load window it solves on.")
    var unitLoadWindow = "30s"

    @Flag(help: "Leave the simulated units' policies as they are (the server's flags, or an operator's policy).")
    var keepUnitPolicy = false

    @Option(
        name: .customLong("fail"),
        help: ArgumentHelp(
            "A failure scenario, repeatable: kill:AT, slow:AT[:FACTOR], delay:AT[:SECONDS], each optionally =WORKER.",
            discussion: "kill: the worker stops reporting and polling at AT seconds and its requests are lost; slow: its steps take FACTOR (3) times as long; delay: its reports arrive SECONDS (3) late."))
    var failures: [String] = []

    @Option(help: "Also write the report as JSON to this file.")
    var report: String?

    @Option(help: "Also write an SVG chart of balance over time to this file.")
    var chart: String?

    func validate() throws {
        guard (1...64).contains(prefillUnits), (1...32).contains(decodeUnits) else {
            throw ValidationError("--prefill-units must be 1...64 and --decode-units 1...32")
        }
        if let speed, !(speed > 0 && speed <= 10_000) { throw ValidationError("--speed must be in (0, 10000]") }
        if let maxOutputTokens, !(1...1_000_000).contains(maxOutputTokens) {
            throw ValidationError("--max-output-tokens must be 1...1000000")
        }
        do {
            try WorkloadCatalog.check(workload: workload, expertLoad: expertLoad, data: dataDirectory)
        } catch {
            throw ValidationError("\(error)")
        }
        for failure in failures {
            do {
                _ = try Failure(parsing: failure)
            } catch {
                throw ValidationError("--fail \(error.description)")
            }
        }
        _ = try seconds(duration, "--duration", in: 1...86_400)
        _ = try seconds(telemetryInterval, "--telemetry-interval", in: 0.01...10)
        _ = try seconds(printInterval, "--print-interval", in: 0.5...3_600)
        _ = try seconds(workloadPeriod, "--workload-period", in: 1...86_400)
        _ = try seconds(unitRebalanceInterval, "--unit-rebalance-interval", in: 10...604_800)
        _ = try seconds(unitLoadWindow, "--unit-load-window", in: 10...86_400)
    }

    var dataDirectory: String? { WorkloadCatalog.dataDirectory(data) }

    /// The simulation flags given other values than their defaults: `serve` without `--simulate` refuses them rather
    /// than ignore them.
    var changedFlags: [String] {
        // Parsing no arguments gives every default; it cannot fail (no option is required).
        guard let defaults = try? SimulationOptions.parse([]) else { return [] }
        let flags: [(String, Bool)] = [
            ("--prefill-units", prefillUnits != defaults.prefillUnits), ("--decode-units", decodeUnits != defaults.decodeUnits),
            ("--workload", workload != defaults.workload), ("--expert-load", expertLoad != defaults.expertLoad),
            ("--seed", seed != defaults.seed), ("--data", data != nil), ("--speed", speed != nil),
            ("--duration", duration != nil), ("--max-output-tokens", maxOutputTokens != nil),
            ("--telemetry-interval", telemetryInterval != defaults.telemetryInterval),
            ("--print-interval", printInterval != defaults.printInterval),
            ("--workload-period", workloadPeriod != defaults.workloadPeriod),
            ("--unit-rebalance-interval", unitRebalanceInterval != defaults.unitRebalanceInterval),
            ("--unit-load-window", unitLoadWindow != defaults.unitLoadWindow), ("--keep-unit-policy", keepUnitPolicy),
            ("--fail", !failures.isEmpty), ("--report", report != nil), ("--chart", chart != nil),
        ]
        return flags.filter(\.1).map(\.0)
    }

    private func seconds(_ text: String?, _ flag: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text else { return nil }
        guard let value = parseDuration(text)?.seconds, range.contains(value) else {
            throw ValidationError("\(flag) must be a duration from \(range.lowerBound) s to \(range.upperBound) s, like 250ms or 5m")
        }
        return value
    }

    /// The simulation's settings; `defaultDuration` applies when --duration is not given (nil: until stopped).
    func settings(target: String, token: String?, defaultDuration: Double?) throws -> Simulation.Settings {
        let trace = try WorkloadCatalog.requests(workload, data: dataDirectory, seed: seed)
        let workloads = try WorkloadCatalog.expertLoad(expertLoad, data: dataDirectory, seed: seed)
        var settings = Simulation.Settings(target: target, trace: trace, workloads: workloads)
        settings.token = token
        settings.prefillUnits = prefillUnits
        settings.decodeUnits = decodeUnits
        settings.speed = speed
        settings.maxOutputTokens = maxOutputTokens
        settings.duration = try seconds(duration, "--duration", in: 1...86_400) ?? defaultDuration
        settings.telemetryInterval = try seconds(telemetryInterval, "--telemetry-interval", in: 0.01...10) ?? 0.25
        settings.printInterval = try seconds(printInterval, "--print-interval", in: 0.5...3_600) ?? 5
        settings.workloadPeriod = try seconds(workloadPeriod, "--workload-period", in: 1...86_400) ?? 30
        if keepUnitPolicy {
            settings.rebalanceIntervalSeconds = nil
            settings.windowSeconds = nil
        } else {
            settings.rebalanceIntervalSeconds = try seconds(unitRebalanceInterval, "--unit-rebalance-interval", in: 10...604_800)
            settings.windowSeconds = try seconds(unitLoadWindow, "--unit-load-window", in: 10...86_400)
        }
        settings.failures = try failures.map { try Failure(parsing: $0) }
        return settings
    }

    /// Prints the report and writes its JSON and SVG where asked.
    func deliver(_ report: SimulationReport) throws {
        printLine(report.text)
        if let path = self.report {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: path))
            printLine("report written to \(path)")
        }
        if let path = chart {
            try Data(report.svg.utf8).write(to: URL(fileURLWithPath: path))
            printLine("chart written to \(path)")
        }
    }
}

/// `fulcrum simulate`: a DeepSeek-shaped cluster driving a running Fulcrum through its HTTP API.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Drive a running Fulcrum with a simulated DeepSeek-shaped cluster: workers, gateway, failures.",
        discussion: """
            Registers the units and workers, then runs them in real time: each worker reports its engine's load and \
            expert slot counts and long-polls its placement; a gateway sends the workload's requests through the \
            prefill and decode balancers. Prints a line per interval and a report at the end; exits 1 if a check \
            failed. Needs an admin token (--token or FULCRUM_TOKEN) unless Fulcrum runs without tokens.
            """)

    @Option(
        help: ArgumentHelp(
            "The Fulcrum to drive: one URL, or its replicas' separated by commas.",
            discussion: "Workers and the gateway follow the leader: a standby's Fulcrum-Leader header, else the next URL."))
    var target = "http://127.0.0.1:8080"

    @Option(help: "An admin token (default: FULCRUM_TOKEN).")
    var token: String?

    @Option(help: "PID of the Fulcrum process, to report its CPU time and memory.")
    var serverPid: Int32?

    @OptionGroup var simulation: SimulationOptions

    func run() async throws {
        var settings: Simulation.Settings
        do {
            settings = try simulation.settings(
                target: target, token: token ?? HTTPConnection.environmentToken, defaultDuration: 60)
        } catch {
            FileHandle.standardError.write(Data("fulcrum: \(error)\n".utf8))
            throw ExitCode(78)
        }
        if let serverPid { settings.watched = [("fulcrum serve (pid \(serverPid))", serverPid)] }
        let simulation = try Simulation(settings)
        let report = try await simulation.run(progress: printLine)
        try self.simulation.deliver(report)
        if !report.passed { throw ExitCode(1) }
    }
}
