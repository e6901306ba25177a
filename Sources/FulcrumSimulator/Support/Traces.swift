import Foundation

/// One request of a replayed trace; `time` is in the trace's own seconds from its first request.
public struct TraceRequest: Sendable {
    public var time: Double
    public var inputTokens: Int
    /// Prompt prefix already in KV cache (Mooncake's shared prefix blocks); 0 for the other traces.
    public var cachedTokens: Int
    public var outputTokens: Int

    public init(time: Double, inputTokens: Int, cachedTokens: Int, outputTokens: Int) {
        self.time = time
        self.inputTokens = inputTokens
        self.cachedTokens = cachedTokens
        self.outputTokens = outputTokens
    }
}

/// A request trace, sorted by time, its first request at 0.
public struct Trace: Sendable {
    public var name: String
    public var requests: [TraceRequest]

    public init(name: String, requests: [TraceRequest]) {
        self.name = name
        self.requests = requests
    }
}

/// A data file the benchmark cannot use, with what is wrong in it.
public struct BenchDataError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Readers of the third-party traces (DOMAIN §3), in the directory `--data` or `FULCRUM_DATA` names. They read the
/// files where they are; nothing is copied into the repository.
public enum BalanceTraces {
    /// Tokens in one Mooncake prefix block (a `hash_ids` entry).
    public static let mooncakeBlockTokens = 512

    /// Mooncake's JSON lines. A request's cached prefix is its leading blocks that some earlier request already
    /// had (the prefix cache holds every block it has seen), at least one token left to compute.
    public static func mooncake(_ path: String, name: String) throws -> Trace {
        struct Line: Decodable {
            var timestamp: Double
            var input_length: Int
            var output_length: Int
            var hash_ids: [Int]
        }
        let decoder = JSONDecoder()
        var seen = Set<Int>()
        var requests: [TraceRequest] = []
        for (number, line) in try lines(of: path).enumerated() where !line.isEmpty {
            let parsed: Line
            do {
                parsed = try decoder.decode(Line.self, from: Data(line.utf8))
            } catch {
                throw BenchDataError("\(path):\(number + 1): not a Mooncake request (\(error))")
            }
            guard parsed.input_length > 0 else { continue }
            let reused = parsed.hash_ids.prefix { seen.contains($0) }.count
            seen.formUnion(parsed.hash_ids)
            requests.append(
                TraceRequest(
                    time: parsed.timestamp / 1000, inputTokens: parsed.input_length,
                    cachedTokens: min(reused * mooncakeBlockTokens, parsed.input_length - 1),
                    outputTokens: max(1, parsed.output_length)))
        }
        return try trace(name, requests, from: path)
    }

    /// Azure's CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`): the whole context is new, nothing cached.
    public static func azure(_ path: String, name: String) throws -> Trace {
        var requests: [TraceRequest] = []
        for (number, line) in try lines(of: path).enumerated().dropFirst() where !line.isEmpty {
            let fields = line.split(separator: ",")
            guard fields.count == 3, let time = azureSeconds(fields[0]), let input = Int(fields[1]),
                let output = Int(fields[2])
            else { throw BenchDataError("\(path):\(number + 1): expected TIMESTAMP,ContextTokens,GeneratedTokens") }
            guard input > 0 else { continue }
            requests.append(TraceRequest(time: time, inputTokens: input, cachedTokens: 0, outputTokens: max(1, output)))
        }
        return try trace(name, requests, from: path)
    }

    /// "2023-11-16 18:17:03.9799600" as seconds (day of month included: the hour may cross midnight).
    public static func azureSeconds(_ text: Substring) -> Double? {
        let parts = text.split(separator: " ")
        guard parts.count == 2, let day = parts[0].split(separator: "-").last.flatMap({ Int($0) }) else { return nil }
        let clock = parts[1].split(separator: ":")
        guard clock.count == 3, let hours = Int(clock[0]), let minutes = Int(clock[1]), let seconds = Double(clock[2])
        else { return nil }
        return Double(day * 86_400 + hours * 3_600 + minutes * 60) + seconds
    }

    /// `count` DeepSeek-R1 requests drawn from ServeGen's per-client length distributions. Each
    /// `chunk-N-dataset.json` maps a 6-hour window start to a client's input and output token distributions
    /// (Python dict literals, `{45: 0.0097, 46: ...}`); `chunk-N-trace.csv` gives its request rate per 600 s. A
    /// request picks a (client, window) in proportion to the requests it served, then its input and output lengths
    /// independently from that window's distributions, as ServeGen's generator does. Arrivals are Poisson at one a
    /// second: the benchmark rescales time to the load it wants.
    public static func serveGen(_ directory: String, name: String, count: Int, seed: UInt64) throws -> Trace {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix("-dataset.json") }.sorted()
        guard !files.isEmpty else { throw BenchDataError("no chunk-*-dataset.json in \(directory)") }
        var windows: [(weight: Double, input: LengthDistribution, output: LengthDistribution)] = []
        for file in files {
            let path = "\(directory)/\(file)"
            let dataset: [String: [String: String]]
            do {
                dataset = try JSONDecoder().decode(
                    [String: [String: String]].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw BenchDataError("\(path): not a ServeGen dataset (\(error))")
            }
            let rates = try serveGenRates(
                "\(directory)/\(file.replacingOccurrences(of: "-dataset.json", with: "-trace.csv"))")
            let starts = dataset.keys.compactMap { Int($0) }.sorted()
            for (index, start) in starts.enumerated() {
                let end = index + 1 < starts.count ? starts[index + 1] : Int.max
                let served = rates.filter { $0.start >= start && $0.start < end }.reduce(0) { $0 + $1.requests }
                guard served > 0, let lengths = dataset[String(start)],
                    let input = try LengthDistribution(lengths["input_tokens"] ?? "", in: path),
                    let output = try LengthDistribution(lengths["output_tokens"] ?? "", in: path)
                else { continue }
                windows.append((served, input, output))
            }
        }
        guard !windows.isEmpty else { throw BenchDataError("\(directory): no client window with requests and lengths") }
        let windowPicker = Picker(weights: windows.map(\.weight))
        var random = SeededGenerator(seed: seed)
        var time = 0.0
        var requests: [TraceRequest] = []
        requests.reserveCapacity(count)
        for _ in 0..<count {
            let window = windows[windowPicker.pick(using: &random)]
            requests.append(
                TraceRequest(
                    time: time, inputTokens: window.input.sample(using: &random), cachedTokens: 0,
                    outputTokens: max(1, window.output.sample(using: &random))))
            time += -log(1 - Double.random(in: 0..<1, using: &random))
        }
        return Trace(name: name, requests: requests)
    }

    /// Requests served in each 600 s row of a ServeGen trace CSV (`start,rate,cv,distribution,shape,scale`).
    public static func serveGenRates(_ path: String) throws -> [(start: Int, requests: Double)] {
        try lines(of: path).enumerated().compactMap { number, line in
            guard !line.isEmpty else { return nil }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count >= 2, let start = Int(fields[0]) else {
                throw BenchDataError("\(path):\(number + 1): expected start,rate,...")
            }
            return (start, (Double(fields[1]) ?? 0) * 600)
        }
    }

    public static func lines(of path: String) throws -> [Substring] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw BenchDataError("cannot read \(path): \(error.localizedDescription)")
        }
        // "\r\n" is one Character in Swift: splitting on "\n" alone would not split Azure's CRLF lines.
        return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    }

    public static func trace(_ name: String, _ requests: [TraceRequest], from path: String) throws -> Trace {
        // Sorted by time in the files we know; sorting anyway (ties keep file order) keeps any other replayable.
        var sorted = requests.enumerated()
            .sorted { $0.element.time != $1.element.time ? $0.element.time < $1.element.time : $0.offset < $1.offset }
            .map(\.element)
        guard let first = sorted.first?.time else { throw BenchDataError("\(path): no requests") }
        for index in sorted.indices { sorted[index].time -= first }
        return Trace(name: name, requests: sorted)
    }
}

/// A token-length distribution from a Python dict literal of length: probability.
public struct LengthDistribution: Sendable {
    public let lengths: [Int]
    public let picker: Picker

    /// nil for an empty distribution (a client that sent nothing in the window).
    public init?(_ literal: String, in path: String) throws {
        let body = literal.trimmingCharacters(in: CharacterSet(charactersIn: "{} \n"))
        guard !body.isEmpty else { return nil }
        var lengths: [Int] = []
        var weights: [Double] = []
        for entry in body.split(separator: ",") {
            let pair = entry.split(separator: ":")
            guard pair.count == 2, let length = Double(pair[0].trimmingCharacters(in: .whitespaces)),
                let weight = Double(pair[1].trimmingCharacters(in: .whitespaces))
            else { throw BenchDataError("\(path): '\(entry)' is not 'length: probability'") }
            lengths.append(max(1, Int(length)))
            weights.append(max(0, weight))
        }
        guard weights.contains(where: { $0 > 0 }) else { return nil }
        self.lengths = lengths
        self.picker = Picker(weights: weights)
    }

    public func sample(using random: inout SeededGenerator) -> Int { lengths[picker.pick(using: &random)] }
}

/// Picks an index in proportion to its weight (binary search over the cumulative weights).
public struct Picker: Sendable {
    public let cumulative: [Double]

    public init(weights: [Double]) {
        var total = 0.0
        cumulative = weights.map {
            total += $0
            return total
        }
    }

    public func pick(using random: inout SeededGenerator) -> Int {
        let target = Double.random(in: 0..<1, using: &random) * (cumulative.last ?? 0)
        var (low, high) = (0, cumulative.count - 1)
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > target { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// SplitMix64: small and fast, and its sequence depends on the seed alone, so every run replays the same lengths,
/// arrivals and power-of-two draws.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
