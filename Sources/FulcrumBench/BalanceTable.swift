import FulcrumSimulator
import FulcrumCore
import Foundation

/// The plain-text tables of `fulcrum bench balance`, and the check of the issue's targets against them.
enum BalanceTable {
    /// One trace at one load: a cell per policy (in `BalancePolicy.allCases` order), Fulcrum against the
    /// clairvoyant reference, and the figures behind them for the target check.
    struct Row {
        var label: String
        var cells: [String]
        var ofClairvoyant: String
        var metrics: [Metric]
        var note: String?
    }

    /// One figure of every policy; `higherIsBetter` says which way is good.
    struct Metric {
        var name: String
        var values: [Double]
        var higherIsBetter: Bool

        var fulcrum: Double { values[policyIndex(.fulcrum)] }
        var clairvoyant: Double { values[policyIndex(.clairvoyant)] }
        /// Fulcrum's quality as a share of the reference's (1.0: as good), whichever way the figure points.
        var ofClairvoyant: Double {
            higherIsBetter ? fulcrum / max(clairvoyant, 1e-12) : clairvoyant / max(fulcrum, 1e-12)
        }

        func beats(_ other: BalancePolicy) -> Bool {
            higherIsBetter ? fulcrum > values[policyIndex(other)] : fulcrum < values[policyIndex(other)]
        }
    }

    static func policyIndex(_ policy: BalancePolicy) -> Int { BalancePolicy.allCases.firstIndex(of: policy) ?? 0 }
    static let baselines = BalancePolicy.baselines

    static func loadLabel(_ load: Double) -> String { load >= 1 ? String(format: "%.1fx", load) : "\(Int(load * 100))%" }


    /// `capacity`: the calibrated capacity the load is a share of, as a share of the ideal.
    static func prefillRow(trace: String, load: Double, _ results: [PrefillRunResult], capacity: Double = 1) -> Row {
        let efficiency = Metric(name: "efficiency", values: results.map(\.efficiency), higherIsBetter: true)
        if load >= 1 {
            return Row(
                label: "\(trace) \(loadLabel(load)) eff", cells: results.map { String(format: "%.3f", $0.efficiency) },
                ofClairvoyant: String(format: "%.1f%%", efficiency.ofClairvoyant * 100), metrics: [efficiency])
        }
        let p50 = Metric(name: "TTFT p50", values: results.map { percentile($0.ttft, 0.5) }, higherIsBetter: false)
        let p99 = Metric(name: "TTFT p99", values: results.map { percentile($0.ttft, 0.99) }, higherIsBetter: false)
        let unfinished = zip(BalancePolicy.allCases, results).filter { $0.1.unfinished > 0 }
            .map { "\($0.0.rawValue) \($0.1.unfinished)" }
        return Row(
            label: "\(trace) \(loadLabel(load)) TTFT s",
            cells: zip(p50.values, p99.values).map { String(format: "%.2f/%.2f", $0, $1) },
            ofClairvoyant: String(format: "%.0f%%/%.0f%%", p50.ofClairvoyant * 100, p99.ofClairvoyant * 100),
            metrics: [p50, p99],
            note: String(format: "%@ %@: of a capacity %.3f of ideal", trace as NSString, loadLabel(load) as NSString, capacity)
                + (unfinished.isEmpty
                    ? ""
                    : "; not prefilled when the run stopped (TTFT counted to then): "
                        + unfinished.joined(separator: ", ")))
    }

    static func decodeRow(trace: String, load: Double, _ results: [DecodeRunResult], capacity: Double = 1) -> Row {
        let efficiency = Metric(name: "efficiency", values: results.map(\.efficiency), higherIsBetter: true)
        let waits = zip(BalancePolicy.allCases, results).map {
            String(
                format: "%@ %.0f/%.1f%%/%.2f", $0.0.rawValue as NSString, $0.1.requestsPerRank, $0.1.waitedForKV * 100,
                $0.1.peakKV)
        }
        let note = "\(trace) \(loadLabel(load)): "
            + (load < 1 ? String(format: "of a capacity %.3f of ideal; ", capacity) : "")
            + "running requests a rank / waited for KV room / peak KV fill: \(waits.joined(separator: ", "))"
        if load >= 1 {
            return Row(
                label: "\(trace) \(loadLabel(load)) eff", cells: results.map { String(format: "%.3f", $0.efficiency) },
                ofClairvoyant: String(format: "%.1f%%", efficiency.ofClairvoyant * 100), metrics: [efficiency], note: note)
        }
        let p99 = Metric(
            name: "step p99", values: results.map { percentile($0.stepSeconds, 0.99) * 1000 }, higherIsBetter: false)
        return Row(
            label: "\(trace) \(loadLabel(load)) p99 ms/eff",
            cells: zip(p99.values, efficiency.values).map { String(format: "%.1f/%.3f", $0, $1) },
            ofClairvoyant: String(format: "%.0f%%/%.1f%%", p99.ofClairvoyant * 100, efficiency.ofClairvoyant * 100),
            metrics: [p99, efficiency], note: note)
    }

    static func print(title: String, _ rows: [Row]) {
        let width = max(24, (rows.map(\.label.count).max() ?? 0) + 2)
        func pad(_ text: String, _ count: Int) -> String {
            text.count >= count ? text + " " : text + String(repeating: " ", count: count - text.count)
        }
        Swift.print("")
        Swift.print(
            pad(title, width) + BalancePolicy.allCases.map { pad($0.rawValue, 12) }.joined() + "fulcrum % of clairvoyant")
        for row in rows { Swift.print(pad(row.label, width) + row.cells.map { pad($0, 12) }.joined() + row.ofClairvoyant) }
        Swift.print("  % of clairvoyant: efficiency fulcrum / clairvoyant, times clairvoyant / fulcrum (100%: as good)")
        for note in rows.compactMap(\.note) { Swift.print("  \(note)") }
    }

    static func printTargets(prefill: [Row], decode: [Row], solve: (decode: Double, prefill: Double)) {
        var misses: [String] = []
        for row in prefill + decode {
            for metric in row.metrics {
                let lost = baselines.filter { !metric.beats($0) }.map(\.rawValue)
                if !lost.isEmpty { misses.append("\(row.label) \(metric.name) vs \(lost.joined(separator: ", "))") }
            }
        }
        Swift.print("")
        Swift.print("targets")
        Swift.print(
            "  Fulcrum beats every baseline on every trace and metric: "
                + (misses.isEmpty ? "met" : "missed on \(misses.count): \(misses.joined(separator: "; "))"))
        let saturatedDecode = decode.filter { $0.label.contains(loadLabel(BalanceBenchmark.saturated)) }.compactMap { row in
            row.metrics.first { $0.name == "efficiency" }.map { String(format: "%@ %.3f", row.label as NSString, $0.fulcrum) }
        }
        let lowDecode = decode.filter { $0.label.contains(loadLabel(BalanceBenchmark.saturated)) }
            .filter { row in row.metrics.contains { $0.name == "efficiency" && $0.fulcrum < 0.95 } }.map(\.label)
        Swift.print(
            "  decode efficiency >= 0.95 (saturated): "
                + (lowDecode.isEmpty ? "met" : "missed on \(lowDecode.joined(separator: ", "))") + "; "
                + saturatedDecode.joined(separator: "; "))
        let lowPrefill = prefill.flatMap { row in
            row.metrics.filter { $0.ofClairvoyant < 0.9 }.map {
                String(format: "%@ %@ %.1f%%", row.label as NSString, $0.name as NSString, $0.ofClairvoyant * 100)
            }
        }
        Swift.print(
            "  prefill >= 90% of clairvoyant: "
                + (lowPrefill.isEmpty ? "met" : "missed: \(lowPrefill.joined(separator: "; "))"))
        Swift.print(
            String(
                format: "  solver <= 5 µs a request: %@ (decode %.2f, prefill %.2f)",
                (max(solve.decode, solve.prefill) <= 5 ? "met" : "missed") as NSString, solve.decode, solve.prefill))
    }
}
