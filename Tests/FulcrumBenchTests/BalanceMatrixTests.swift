import FulcrumCore
import FulcrumSimulator
import FulcrumTestSupport
import Testing

@testable import FulcrumBench

/// The matrix runs the policies on the simulator's engines through the balancers' own rules; these check that a cell
/// measures what it says, on a workload small enough for the default test run.
@Suite("Balance benchmark")
struct BalanceMatrixTests {
    static let trace = RequestModel.conversation.trace(count: 300, seed: 7)

    /// One saturated prefill cell at the matrix's centre loop, short enough for a debug build.
    static func cell() -> BalanceMatrix.Cell {
        let arrivals = BalanceMatrix.arrivals(.prefill, trace, steps: 16, warmUp: BalanceBenchmark.warmUp)
        return BalanceMatrix.run(
            .prefill, workload: "conv", arrivals: arrivals, loop: BalanceMatrix.loops(.prefill)[0], steps: 16, seed: 3)
    }

    @Test func aCellRatesEveryPolicyRepeatablyBelowTheClairvoyantBound() async throws {
        // Off the cooperative pool: other suites time deadlines on it.
        let (cell, again) = try await offPool { (Self.cell(), Self.cell()) }
        #expect(cell.efficiency.count == BalancePolicy.allCases.count)
        for efficiency in cell.efficiency { #expect(efficiency > 0 && efficiency <= 1) }
        // The bound sees every rank's true load at once; a counting baseline sees less, so it cannot do much better.
        #expect(cell.best.efficiency <= cell.clairvoyant + 0.01)
        #expect(again.efficiency == cell.efficiency)
    }

    @Test func targetsNameEveryMissedCell() {
        let loop = BalanceMatrix.loops(.decode)[0]
        var efficiency = [Double](repeating: 0.9, count: BalancePolicy.allCases.count)
        efficiency[BalanceTable.policyIndex(.fulcrum)] = 0.8
        efficiency[BalanceTable.policyIndex(.clairvoyant)] = 0.99
        let cells = [BalanceMatrix.Cell(workload: "w", loop: loop, efficiency: efficiency)]
        let lines = BalanceMatrix.targets(.decode, cells)
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { !$0.1 })
        #expect(lines[0].0.contains("missed in 1 of 1"))
        #expect(lines[2].0.contains("0.800"))
    }
}
