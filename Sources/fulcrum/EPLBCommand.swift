import ArgumentParser
import FulcrumCore
import Foundation

/// `fulcrum eplb`: the expert placement the service would publish, for one load matrix, offline. Takes DeepSeek's
/// input names so its results compare directly with deepseek-ai/EPLB's.
struct EPLBCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eplb",
        abstract: "Solve expert placement for a load matrix and print phy2log, logcnt, log2phy and balance as JSON.",
        usage: "fulcrum eplb --input <file> [<options>]",
        discussion: """
            The input is JSON with DeepSeek's names, {"weight": [[...]], "num_replicas", "num_groups", "num_nodes", \
            "num_gpus"} (other keys are ignored), or an SGLang expert-distribution dump {"logical_count": [[...]]} \
            whose leading all-zero rows (dense layers) are dropped and whose shape comes from the flags. Flags \
            override the file.
            """)

    @Option(help: ArgumentHelp("JSON input file ('-' for standard input).", valueName: "file"))
    var input: String?

    @Option(help: ArgumentHelp(
        "A previous result (JSON with phy2log) to keep replicas in place and count moves against.", valueName: "file"))
    var previous: String?

    @Option(help: "auto (DeepSeek's rule: hierarchical when groups divide over nodes), hierarchical or global.")
    var policy = "auto"

    @Option(help: ArgumentHelp("Physical expert slots (P).", valueName: "n")) var numReplicas: Int?
    @Option(help: ArgumentHelp("Expert groups.", valueName: "n")) var numGroups: Int?
    @Option(help: ArgumentHelp("Nodes.", valueName: "n")) var numNodes: Int?
    @Option(help: ArgumentHelp("GPUs.", valueName: "n")) var numGpus: Int?

    @Option(help: ArgumentHelp(
        "With --previous: move at most this many replicas, spent on the layers that gain most per move.", valueName: "n"))
    var maxMoves: Int?

    @Flag(help: "Use DeepSeek's algorithm as published instead of Fulcrum's.")
    var deepseek = false

    struct Output: Encodable {
        struct Balance: Encodable {
            var max: Double
            var mean: Double
            var perLayer: [Double]
        }
        var phy2log: [[Int]]
        var logcnt: [[Int]]
        var log2phy: [[[Int]]]
        var balancedness: Balance
        var moved: Int?
        var solveSeconds: Double
    }

    func run() async throws {
        let json = try Self.read(try required(("--input", input)))
        guard case .object(let root) = json else { throw ValidationError("the input must be a JSON object") }
        let isDump = root["weight"] == nil && root["logical_count"] != nil
        guard let matrix = root["weight"] ?? root["logical_count"] else {
            throw ValidationError("the input needs \"weight\" (or an SGLang \"logical_count\")")
        }
        var weight = try Self.numbers(matrix)
        if isDump {
            while let first = weight.first, first.allSatisfy({ $0 == 0 }), weight.count > 1 { weight.removeFirst() }
        }
        // The shape: each number from its flag, else from the input.
        func shape(_ flag: Int?, _ key: String) -> (flag: String, value: Int?) {
            if flag == nil, case .int(let value)? = root[key] { return (key, value) }
            return ("--" + key.replacingOccurrences(of: "_", with: "-"), flag)
        }
        let (replicas, groups, nodes, gpus): (Int, Int, Int, Int)
        do {
            (replicas, groups, nodes, gpus) = try required(
                shape(numReplicas, "num_replicas"), shape(numGroups, "num_groups"), shape(numNodes, "num_nodes"),
                shape(numGpus, "num_gpus"))
        } catch let error as ArgumentParser.ValidationError {
            throw ValidationError(
                "\(error.message) (give each as a flag or in the input: \"num_replicas\" for --num-replicas and so on)")
        }
        let chosen: EPLBPolicy?
        switch policy {
        case "auto": chosen = nil
        case "hierarchical": chosen = .hierarchical
        case "global": chosen = .global
        default: throw ValidationError("--policy must be auto, hierarchical or global")
        }
        let problem: EPLBProblem
        do {
            problem = try EPLBProblem(
                weight: weight, replicas: replicas, groups: groups, nodes: nodes, gpus: gpus, policy: chosen)
        } catch {
            throw ValidationError(error.message)
        }
        if let maxMoves, maxMoves < 0 || previous == nil || deepseek {
            throw ValidationError("--max-moves needs --previous, Fulcrum's solver and a count of at least 0; got \(maxMoves)")
        }
        let current = try previous.map { try Self.previousTable($0, problem) }
        let started = ContinuousClock.now
        var solution: EPLBSolution
        var moved: Int?
        if let current, !deepseek {
            // What the service would publish: solved, relabelled onto the table in use, layers that gain nothing kept.
            let proposal: RebalanceProposal
            do {
                proposal = try RebalancePlanner.propose(problem, current: current, maxMoves: maxMoves)
            } catch {
                throw ValidationError(error.message)
            }
            solution = EPLBSolution(
                phy2log: proposal.phy2log,
                logcnt: proposal.phy2log.map { row in
                    row.reduce(into: Array(repeating: 0, count: problem.experts)) { $0[$1] += 1 }
                },
                gpus: problem.gpus)
            moved = proposal.moved
        } else {
            solution = deepseek ? DeepSeekEPLB.solve(problem) : FulcrumEPLB.solve(problem)
            if let current {
                let result = MovementMinimizer.relabel(
                    solution, previous: current, nodes: problem.policy == .hierarchical ? problem.nodes : 1)
                solution = result.solution
                moved = result.moved.reduce(0, +)
            }
        }
        let elapsed = ContinuousClock.now - started
        let perLayer = solution.gpuLoads(problem.weight).map(balancedness)
        let output = Output(
            phy2log: solution.phy2log, logcnt: solution.logcnt, log2phy: solution.log2phy,
            balancedness: .init(
                max: perLayer.max() ?? 1, mean: perLayer.reduce(0, +) / Double(max(1, perLayer.count)), perLayer: perLayer),
            moved: moved,
            solveSeconds: elapsed.seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        FileHandle.standardOutput.write(try encoder.encode(output))
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// The `phy2log` of a previous result, checked against the problem's shape.
    static func previousTable(_ path: String, _ problem: EPLBProblem) throws -> [[Int]] {
        guard case .object(let old) = try read(path), let table = old["phy2log"] else {
            throw ValidationError("--previous must be a JSON object with phy2log")
        }
        let rows = try numbers(table).map { row in
            try row.map { value -> Int in
                guard let id = Int(exactly: value), (0..<problem.experts).contains(id) else {
                    throw ValidationError("--previous holds \(value), not an expert id from 0 to \(problem.experts - 1)")
                }
                return id
            }
        }
        guard rows.count == problem.layers, rows.allSatisfy({ $0.count == problem.replicas }) else {
            throw ValidationError("--previous has a phy2log of another shape")
        }
        return rows
    }

    static func read(_ path: String) throws -> JSONValue {
        let data: Data
        do {
            data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("cannot read \(path): \(error.localizedDescription)")
        }
        do {
            return try JSONValue.parse(data)
        } catch {
            throw ValidationError("\(path) is not valid JSON: \(error.message) at byte \(error.offset)")
        }
    }

    static func numbers(_ value: JSONValue) throws -> [[Double]] {
        guard case .array(let rows) = value else { throw ValidationError("the load matrix must be an array of arrays") }
        return try rows.enumerated().map { index, row in
            guard case .array(let cells) = row else { throw ValidationError("row \(index) is not an array") }
            return try cells.map { cell in
                switch cell {
                case .int(let value): return Double(value)
                case .double(let value): return value
                default: throw ValidationError("row \(index) holds a value that is not a number")
                }
            }
        }
    }
}
