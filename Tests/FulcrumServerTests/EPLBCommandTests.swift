import Foundation
import Testing

/// `fulcrum eplb`, run as an operator would.
@Suite("fulcrum eplb")
struct EPLBCommandTests {
    static func run(_ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = ServeProcessTests.binary
        process.arguments = ["eplb"] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        if let input {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            pipe.fileHandleForWriting.write(Data(input.utf8))
            try pipe.fileHandleForWriting.close()
        } else {
            try process.run()
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            + String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    static let workedExample = """
        {"weight": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                    [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]],
         "num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8, "comment": "ignored"}
        """

    @Test func solvesDeepSeeksWorkedExampleAtLeastAsWell() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path))
        let deepseek = try Self.run(["--input", "-", "--deepseek"], input: Self.workedExample)
        #expect(deepseek.status == 0, "\(deepseek.output)")
        let theirs = try JSONSerialization.jsonObject(with: Data(deepseek.output.utf8)) as? [String: Any]
        #expect(theirs?["phy2log"] as? [[Int]] == [
            [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1], [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
        ])
        let ours = try Self.run(["--input", "-"], input: Self.workedExample)
        let result = try JSONSerialization.jsonObject(with: Data(ours.output.utf8)) as? [String: Any]
        let balance = result?["balancedness"] as? [String: Any]
        let perLayer = balance?["perLayer"] as? [Double] ?? []
        #expect(perLayer.count == 2 && perLayer[0] <= 1.2081 + 1e-4 && perLayer[1] <= 1.2422 + 1e-4)
        #expect((result?["log2phy"] as? [[[Int]]])?.first?.count == 12)
        #expect(result?["solveSeconds"] is Double)
    }

    @Test func countsMovesAgainstAPreviousResult() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path))
        let first = try Self.run(["--input", "-"], input: Self.workedExample)
        let previous = FileManager.default.temporaryDirectory.appendingPathComponent("eplb-\(UUID().uuidString).json")
        try first.output.write(to: previous, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: previous) }
        let again = try Self.run(["--input", "-", "--previous", previous.path], input: Self.workedExample)
        let result = try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any]
        #expect(result?["moved"] as? Int == 0)

        // An engine's start-up table (slot i holds expert i mod 12) in use: the plan moves replicas, at most
        // --max-moves of them.
        let startUp = "[" + (0..<16).map { String($0 % 12) }.joined(separator: ",") + "]"
        try #"{"phy2log": [\#(startUp), \#(startUp)]}"#.write(to: previous, atomically: true, encoding: .utf8)
        let free = try JSONSerialization.jsonObject(
            with: Data(try Self.run(["--input", "-", "--previous", previous.path], input: Self.workedExample).output.utf8))
            as? [String: Any]
        let freeMoved = try #require(free?["moved"] as? Int)
        #expect(freeMoved > 0)
        let bounded = try Self.run(
            ["--input", "-", "--previous", previous.path, "--max-moves", "\(freeMoved - 1)"], input: Self.workedExample)
        let boundedResult = try JSONSerialization.jsonObject(with: Data(bounded.output.utf8)) as? [String: Any]
        #expect((boundedResult?["moved"] as? Int ?? .max) <= freeMoved - 1)
        let refused = try Self.run(["--input", "-", "--max-moves", "3"], input: Self.workedExample)
        #expect(refused.status != 0 && refused.output.contains("--max-moves needs --previous"), "\(refused.output)")

        for bad in [#"{"phy2log": [[1e400]]}"#, #"{"phy2log": [[-1]]}"#, #"{"phy2log": [[1.5]]}"#, "{}"] {
            try bad.write(to: previous, atomically: true, encoding: .utf8)
            let refused = try Self.run(["--input", "-", "--previous", previous.path], input: Self.workedExample)
            #expect(refused.status != 0 && refused.output.contains("--previous"), "\(refused.output)")
        }
    }

    @Test(arguments: [
        (#"{"weight": [[1, 2], [3]], "num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}"#, "rows"),
        (#"{"weight": [[1, -2]], "num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}"#, "non-negative"),
        (#"{"weight": [[1, 2]], "num_replicas": 3, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}"#, "divide"),
        (#"{"weight": [[1, 2]], "num_groups": 1, "num_nodes": 1, "num_gpus": 2}"#, "num-replicas"),
        (#"{"weight": [[1, "x"]], "num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}"#, "not a number"),
        ("[1, 2", "not valid JSON"),
    ])
    func badInputIsRefusedWithAReason(input: String, mentions: String) throws {
        try #require(FileManager.default.isExecutableFile(atPath: ServeProcessTests.binary.path))
        let result = try Self.run(["--input", "-"], input: input)
        #expect(result.status != 0)
        #expect(result.output.contains(mentions), "\(result.output)")
    }
}
