import FulcrumCore
import FulcrumSimulator
import Foundation

/// `fulcrum bench balance --matrix`: every policy on every workload under every control loop, side by side, in
/// lock-step units whose steps are paced (10 ms to 2 s a step), whose workers report every 1 to 10 steps, whose
/// gateways forward with up to 500 ms of delay, with and without `admitted`, `tokensPerSecond` and hold-back
/// support. One factor varies at a time around a centre loop, plus the loop of the harness that found the round-1
/// losses and a harsher one. Every cell is saturated: prefill at 1.3x the unit's token budget, decode at 1.3x its
/// KV cache (requests wait for room).
enum BalanceMatrix {
    struct Cell: Sendable {
        var workload: String
        var loop: ControlLoop
        /// Efficiency per policy, `BalancePolicy.allCases` order.
        var efficiency: [Double]

        var fulcrum: Double { efficiency[BalanceTable.policyIndex(.fulcrum)] }
        var clairvoyant: Double { efficiency[BalanceTable.policyIndex(.clairvoyant)] }
        var best: (policy: BalancePolicy, efficiency: Double) {
            BalancePolicy.baselines.map { ($0, efficiency[BalanceTable.policyIndex($0)]) }.max { $0.1 < $1.1 } ?? (.roundRobin, 0)
        }
        var margin: Double { fulcrum / max(best.efficiency, 1e-12) - 1 }
    }

    enum Role: String, Sendable {
        case prefill, decode
    }

    /// The loops of one role: the centre, then one change at a time, then the round-1 harness and a harsher one.
    static func loops(_ role: Role) -> [ControlLoop] {
        let every = role == .prefill ? 2 : 5
        let centre = ControlLoop(pacing: .fixed(0.06), telemetry: .steps(every))
        var loops = [centre]
        for step in [0.01, 0.3, 2.0] { loops.append(with(centre) { $0.pacing = .fixed(step) }) }
        for steps in [1, role == .prefill ? 5 : 2, 10] { loops.append(with(centre) { $0.telemetry = .steps(steps) }) }
        for delay in [0.1, 0.5] { loops.append(with(centre) { $0.delay = delay }) }
        loops.append(with(centre) { $0.admitted = false })
        if role == .decode {
            loops.append(with(centre) { $0.tokensPerSecond = false })
            loops.append(with(centre) { $0.gatewayHolds = false })
        }
        let harness = ControlLoop(
            pacing: .fixed(0.01), telemetry: .steps(every), admitted: false, tokensPerSecond: false, gatewayHolds: false)
        loops.append(harness)
        loops.append(with(harness) {
            $0.telemetry = .steps(10)
            $0.delay = 0.5
        })
        return loops
    }

    static func with(_ loop: ControlLoop, _ change: (inout ControlLoop) -> Void) -> ControlLoop {
        var copy = loop
        change(&copy)
        return copy
    }

    /// Workloads of one role: the built-in models, the synthetic families, one drawn from `randomSeed`, and the
    /// real traces when given.
    static func workloads(_ role: Role, count: Int, seed: UInt64, randomSeed: UInt64, real: [Trace]) -> [Trace] {
        let models: [RequestModel] = role == .prefill ? [.conversation, .code, .longContext] : [.conversation, .reasoning]
        return models.map { $0.trace(count: count, seed: seed) }
            + (SyntheticWorkload.families + [.random(seed: randomSeed)]).map { $0.trace(count: count, seed: seed) }
            + real
    }

    /// The saturated arrivals of one workload in step units (a step of 1 s): a loop of step T multiplies the times.
    static func arrivals(_ role: Role, _ trace: Trace, steps: Double, warmUp: Double) -> [Arrival] {
        switch role {
        case .prefill:
            let capacity = Double(PrefillSimulation.ranks * PrefillSimulation.budget)
            return BalanceArrivals.scaled(
                trace, cost: { Double($0.inputTokens - $0.cachedTokens) }, capacity: capacity, load: BalanceBenchmark.saturated,
                duration: steps, horizon: steps)
        case .decode:
            // KV held over a request's life: its context, growing, for as many steps as it has output tokens.
            let held: (TraceRequest) -> Double = {
                Double($0.outputTokens) * (Double($0.inputTokens) + Double($0.outputTokens) / 2)
            }
            let capacity = Double(DecodeSimulation.ranks * DecodeSimulation.kvCapacity)
            let fill = BalanceArrivals.fill(trace, tokens: capacity)
            return BalanceArrivals.merge(
                fill, over: steps * warmUp * 0.75,
                into: BalanceArrivals.scaled(
                    trace, cost: held, capacity: capacity, load: BalanceBenchmark.saturated, duration: steps, horizon: steps))
        }
    }

    static func stepSeconds(_ loop: ControlLoop) -> Double {
        if case .fixed(let seconds) = loop.pacing { return seconds }
        return 0.05
    }

    static func run(
        _ role: Role, workload: String, arrivals unit: [Arrival], loop: ControlLoop, steps: Double, seed: UInt64
    ) -> Cell {
        let scale = stepSeconds(loop)
        let arrivals = unit.map { Arrival(time: $0.time * scale, request: $0.request) }
        let window = (steps * BalanceBenchmark.warmUp * scale)..<(steps * scale)
        let efficiency = BalancePolicy.allCases.map { policy -> Double in
            switch role {
            case .prefill: BalanceRuns.prefill(policy, arrivals: arrivals, window: window, loop: loop, seed: seed).efficiency
            case .decode: BalanceRuns.decode(policy, arrivals: arrivals, window: window, loop: loop, seed: seed).efficiency
            }
        }
        return Cell(workload: workload, loop: loop, efficiency: efficiency)
    }

    /// Every cell of one role, on all cores.
    static func cells(_ role: Role, traces: [Trace], steps: Double, seed: UInt64) async -> [Cell] {
        let units = traces.map { (name: $0.name, arrivals: arrivals(role, $0, steps: steps, warmUp: BalanceBenchmark.warmUp)) }
        let jobs = units.flatMap { unit in loops(role).map { (unit.name, unit.arrivals, $0) } }
        return await withTaskGroup(of: (Int, Cell).self) { group in
            var results = [Cell?](repeating: nil, count: jobs.count)
            var started = 0
            let width = max(1, ProcessInfo.processInfo.activeProcessorCount)
            func start() {
                let (index, job) = (started, jobs[started])
                group.addTask { (index, run(role, workload: job.0, arrivals: job.1, loop: job.2, steps: steps, seed: seed)) }
                started += 1
            }
            while started < min(width, jobs.count) { start() }
            var done = 0
            while let (index, cell) = await group.next() {
                results[index] = cell
                done += 1
                // Progress on stderr, so the tables on stdout stay clean.
                FileHandle.standardError.write(Data("\r\(role.rawValue): \(done)/\(jobs.count) cells".utf8))
                if done == jobs.count { FileHandle.standardError.write(Data("\n".utf8)) }
                if started < jobs.count { start() }
            }
            return results.compactMap { $0 }
        }
    }

    static func print(_ role: Role, _ cells: [Cell]) {
        let label = max(28, (cells.map(\.workload.count).max() ?? 0) + 2)
        let loopWidth = (cells.map(\.loop.label.count).max() ?? 0) + 2
        func pad(_ text: String, _ count: Int) -> String {
            text.count >= count ? text + " " : text + String(repeating: " ", count: count - text.count)
        }
        Swift.print("")
        Swift.print(
            pad("\(role.rawValue) efficiency", label) + pad("control loop", loopWidth)
                + BalancePolicy.allCases.map { pad($0.rawValue, 11) }.joined() + "margin")
        for cell in cells {
            let best = cell.best
            let missed = cell.fulcrum < best.efficiency - 0.005
            Swift.print(
                pad(cell.workload, label) + pad(cell.loop.label, loopWidth)
                    + cell.efficiency.map { pad(String(format: "%.3f", $0), 11) }.joined()
                    + String(format: "%+.1f%% vs %@%@", cell.margin * 100, best.policy.rawValue, missed ? "  MISSED" : ""))
        }
    }

    /// The issue's targets over one role's cells: lines to print, and whether every one was met.
    static func targets(_ role: Role, _ cells: [Cell]) -> [(String, Bool)] {
        let misses = cells.filter { $0.fulcrum < $0.best.efficiency - 0.005 }
        let meanMargin = cells.map(\.margin).reduce(0, +) / Double(max(1, cells.count))
        let goal = role == .prefill ? 0.03 : 0.02
        var lines: [(String, Bool)] = [
            (
                "\(role.rawValue): Fulcrum >= best baseline - 0.005 in every cell: "
                    + (misses.isEmpty
                        ? "met (\(cells.count) cells)"
                        : "missed in \(misses.count) of \(cells.count): "
                            + misses.prefix(12).map { String(format: "%@ [%@] %.3f vs %.3f", $0.workload as NSString, $0.loop.label as NSString, $0.fulcrum, $0.best.efficiency) }
                            .joined(separator: "; ") + (misses.count > 12 ? "; ..." : "")),
                misses.isEmpty
            ),
            (
                String(
                    format: "%@: mean margin over the best baseline %+.2f%% (target >= +%.0f%%): %@", role.rawValue,
                    meanMargin * 100, goal * 100, meanMargin >= goal ? "met" : "missed"),
                meanMargin >= goal
            ),
        ]
        if role == .decode {
            let bound = cells.filter { $0.clairvoyant >= 0.97 }
            let low = bound.filter { $0.fulcrum < 0.95 }
            lines.append(
                (
                    "decode: >= 0.95 wherever the clairvoyant bound reaches 0.97 (\(bound.count) cells): "
                        + (low.isEmpty
                            ? "met"
                            : "missed in \(low.count): "
                                + low.prefix(12).map { String(format: "%@ [%@] %.3f", $0.workload as NSString, $0.loop.label as NSString, $0.fulcrum) }
                                .joined(separator: "; ")),
                    low.isEmpty
                ))
        }
        return lines
    }
}
