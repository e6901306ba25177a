import Foundation
import FulcrumCore
import FulcrumSimulator
import FulcrumTestSupport
import Testing

/// The built-in workloads reproduce the statistics of the public data they stand in for: checked here against the
/// figures written in their source (always), and against the real files themselves when this machine has them.
// These tests compute for a few seconds in a debug build: they do it off the cooperative pool (`offPool`) and one at
// a time, so the suites that wait on timers keep running on a 2-core machine.
@Suite("Built-in workload models", .serialized)
struct WorkloadModelTests {
    static let builtinSeed: UInt64 = 5

    typealias Figures = TraceFigures
    typealias ExpertFigures = ExpertLoadFigures

    static func near(_ value: Double, _ target: Double, within tolerance: Double) -> Bool {
        abs(value - target) <= tolerance * target
    }

    /// The figures each preset's source comment cites (DOMAIN §3's files, measured once).
    static let published: [(model: RequestModel, input: (Double, Double, Double), output: (Double, Double, Double))] = [
        (.conversation, (1_020, 2_734, 1_155), (129, 424, 211)),
        (.code, (1_469, 5_188, 2_048), (13, 55, 28)),
        (.longContext, (6_909, 27_367, 12_035), (350, 597, 343)),
        (.reasoning, (208, 2_092, 1_270), (792, 3_432, 1_530)),
    ]

    @Test(arguments: 0..<4)
    func requestLengthsReproduceTheirSourcesFigures(_ index: Int) async throws {
        let (model, input, output) = Self.published[index]
        let figures = try await offPool { Figures(model.trace(count: 20_000, seed: 7)) }
        let context = Comment(rawValue: "\(model.name): \(figures)")
        #expect(Self.near(figures.inputMedian, input.0, within: 0.08), context)
        #expect(Self.near(figures.inputP90, input.1, within: 0.08), context)
        #expect(Self.near(figures.inputMean, input.2, within: 0.12), context)
        #expect(Self.near(figures.outputMedian, output.0, within: 0.1), context)
        #expect(Self.near(figures.outputP90, output.1, within: 0.08), context)
        #expect(Self.near(figures.outputMean, output.2, within: 0.12), context)
        #expect(Self.near(figures.rate, model.rate, within: 0.06), context)
    }

    @Test func arrivalsAreAsBurstyAsTheirSources() async throws {
        let (conversation, code, long) = try await offPool {
            (
                Figures(RequestModel.conversation.trace(count: 20_000, seed: 3)),
                Figures(RequestModel.code.trace(count: 20_000, seed: 3)),
                RequestModel.longContext.trace(count: 20_000, seed: 3)
            )
        }
        // Azure conversation: variance / mean of 10 s counts 3.86, nearly no empty second.
        #expect(conversation.dispersion10 > 2 && conversation.dispersion10 < 7, "\(conversation)")
        #expect(conversation.emptySeconds < 0.05, "\(conversation)")
        // Azure code: 71.6 and 73% of seconds empty.
        #expect(code.dispersion10 > 35 && code.dispersion10 < 140, "\(code)")
        #expect(code.emptySeconds > 0.55 && code.emptySeconds < 0.85, "\(code)")
        // Mooncake: requests in 3 s steps (~10 each), 37.4% of prompt tokens cached.
        #expect(Set(long.requests.map(\.time)).count < long.requests.count / 5)
        #expect(Self.near(Figures(long).cachedShare, 0.374, within: 0.1), "\(Figures(long))")
        #expect(long.requests.allSatisfy { $0.cachedTokens % 512 == 0 && $0.cachedTokens < $0.inputTokens })
    }

    @Test func aSeedFixesTheWorkload() {
        let a = RequestModel.conversation.trace(count: 500, seed: 11).requests
        let b = RequestModel.conversation.trace(count: 500, seed: 11).requests
        let c = RequestModel.conversation.trace(count: 500, seed: 12).requests
        #expect(a.map(\.inputTokens) == b.map(\.inputTokens) && a.map(\.time) == b.map(\.time))
        #expect(a.map(\.inputTokens) != c.map(\.inputTokens))
        #expect(a.first?.time == 0)
    }

    // MARK: expert load

    static func correlation(_ a: [[Double]], _ b: [[Double]]) -> Double { ExpertLoadFigures.correlation(a, b) }

    @Test func expertLoadHasTheDumpsShape() async throws {
        let (prefill, decode) = try await offPool {
            let workloads = ExpertWorkloads.builtin(seed: Self.builtinSeed)
            return ((0..<8).map { workloads.workload(.prefill, index: $0).share },
                (0..<4).map { workloads.workload(.decode, index: $0).share })
        }
        for share in prefill + decode {
            #expect(share.count == 58 && share.allSatisfy { $0.count == 256 && $0.allSatisfy { $0 > 0 } })
            #expect(share.allSatisfy { abs($0.reduce(0, +) - 1) < 1e-9 })
        }
        let (figures, same, cross) = try await offPool {
            (ExpertFigures(prefill[0]), Self.correlation(prefill[0], prefill[1]), Self.correlation(prefill[0], decode[0]))
        }
        let calibration = ExpertLoadModel.Calibration.self
        #expect(Self.near(figures.logSpread, calibration.logSpread.mean, within: 0.15), "\(figures)")
        #expect(Self.near(figures.hottestOverMean, calibration.hottestOverMean, within: 0.3), "\(figures)")
        #expect(Self.near(figures.groupVarianceShare, calibration.groupVarianceShare, within: 0.4), "\(figures)")
        #expect(Self.near(figures.startUp32, calibration.startUpBalancedness32, within: 0.2), "\(figures)")
        #expect(Self.near(figures.startUp144, calibration.startUpBalancedness144, within: 0.25), "\(figures)")
        // Workloads of one phase resemble each other more than the other phase's.
        #expect(abs(same - calibration.samePhaseCorrelation) < 0.04, "same phase \(same)")
        #expect(abs(cross - calibration.crossPhaseCorrelation) < 0.08, "cross phase \(cross)")
    }

    @Test func expertLoadDriftsSlowlyAndSwitchesWorkloads() async throws {
        let (start, later, switched, drift, jump, same, other) = try await offPool {
            let workloads = ExpertWorkloads.builtin(seed: Self.builtinSeed)
            let unit = ClusterShape(prefillUnits: 1, decodeUnits: 0, prefix: "t").units[0]
            let start = workloads.workload(for: unit, elapsed: 0, period: 30)
            let later = workloads.workload(for: unit, elapsed: 20, period: 30)
            let switched = workloads.workload(for: unit, elapsed: 31, period: 30)
            let parts = ExpertLoadModel(seed: 5).parts(.decode, workload: 2).fixed
            return (
                start.name, later, switched.name, Self.correlation(start.share, later.share),
                Self.correlation(later.share, switched.share),
                parts == ExpertLoadModel(seed: 5).parts(.decode, workload: 2).fixed,
                parts != ExpertLoadModel(seed: 6).parts(.decode, workload: 2).fixed
            )
        }
        #expect(start != later.name && later.name != switched)
        #expect(drift > 0.99 && drift < 1, "drift \(drift)")
        #expect(jump < 0.97)
        // A seed fixes it.
        #expect(same && other)
    }

    /// Fulcrum's solver never loses to DeepSeek's on any layer of the built-in loads (the real dumps are checked in
    /// FulcrumEPLBTests when present).
    @Test func fulcrumEPLBNeverLosesToDeepSeekOnBuiltInLoads() async throws {
        let peaks = try await offPool {
            let workloads = ExpertWorkloads.builtin(seed: Self.builtinSeed)
            return try [(workloads.workload(.prefill, index: 0).share, 4, 32), (workloads.workload(.decode, index: 0).share, 18, 144)]
                .map { share, nodes, gpus in
                    let weight = share.map { $0.map { $0 * 1e6 } }
                    let problem = try EPLBProblem(weight: weight, replicas: 288, groups: 8, nodes: nodes, gpus: gpus)
                    return (
                        FulcrumEPLB.solve(problem).gpuLoads(weight).map { ($0.max() ?? 0) },
                        DeepSeekEPLB.solve(problem).gpuLoads(weight).map { ($0.max() ?? 0) }
                    )
                }
        }
        for (ours, theirs) in peaks {
            #expect(ours.count == 58)
            for (mine, base) in zip(ours, theirs) { #expect(mine <= base * (1 + 1e-12)) }
        }
    }

    // MARK: against the real data, when present

    static let azureConv = SharedData.path("azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    static let mooncake = SharedData.path("mooncake/conversation_trace.jsonl")
    static let dumps = SharedData.path("expert_load/deepseek_v3")

    /// The conversation model against the Azure file it stands for. Needs the real trace (FULCRUM_DATA or
    /// ../shared/data); a clone without it runs the figure checks above instead.
    @Test(.enabled(if: azureConv != nil, "needs azure_llm_2023/ under FULCRUM_DATA or ../shared/data"))
    func conversationModelMatchesTheAzureTrace() async throws {
        let path = try #require(Self.azureConv)
        let (real, model) = try await offPool {
            (Figures(try BalanceTraces.azure(path, name: "azure-conv")), Figures(RequestModel.conversation.trace(count: 20_000, seed: 1)))
        }
        for (mine, theirs) in [(model.inputMedian, real.inputMedian), (model.inputMean, real.inputMean),
            (model.outputMedian, real.outputMedian), (model.outputMean, real.outputMean), (model.rate, real.rate)]
        {
            #expect(Self.near(mine, theirs, within: 0.12), "model \(model) real \(real)")
        }
        #expect(model.dispersion10 / real.dispersion10 > 0.5 && model.dispersion10 / real.dispersion10 < 2)
    }

    @Test(.enabled(if: mooncake != nil, "needs mooncake/ under FULCRUM_DATA or ../shared/data"))
    func longContextModelMatchesTheMooncakeTrace() async throws {
        let path = try #require(Self.mooncake)
        let (real, model) = try await offPool {
            (Figures(try BalanceTraces.mooncake(path, name: "mooncake")), Figures(RequestModel.longContext.trace(count: 12_000, seed: 1)))
        }
        #expect(Self.near(model.cachedShare, real.cachedShare, within: 0.12), "model \(model) real \(real)")
        #expect(Self.near(model.inputMean, real.inputMean, within: 0.12), "model \(model) real \(real)")
        #expect(Self.near(model.rate, real.rate, within: 0.08), "model \(model) real \(real)")
    }

    @Test(.enabled(if: dumps != nil, "needs expert_load/deepseek_v3/ under FULCRUM_DATA or ../shared/data"))
    func expertModelMatchesTheDeepSeekDumps() async throws {
        let path = try #require(Self.dumps)
        let figures = try await offPool {
            let (real, builtin) = (try ExpertWorkloads.load(directory: path), ExpertWorkloads.builtin(seed: Self.builtinSeed))
            return [ClusterShape.Role.prefill, .decode].map { role in
                (role, ExpertFigures(real.workload(role, index: 0).share), ExpertFigures(builtin.workload(role, index: 0).share))
            }
        }
        for (role, theirs, mine) in figures {
            let context = Comment(rawValue: "\(role): model \(mine) real \(theirs)")
            #expect(Self.near(mine.logSpread, theirs.logSpread, within: 0.2), context)
            #expect(Self.near(mine.hottestOverMean, theirs.hottestOverMean, within: 0.35), context)
            #expect(Self.near(mine.startUp32, theirs.startUp32, within: 0.2), context)
            #expect(Self.near(mine.startUp144, theirs.startUp144, within: 0.3), context)
        }
    }
}
