import Foundation

extension SimulationReport {
    /// The report as an operator reads it at the end of a run.
    public var text: String {
        /// Right-aligned in `width` columns.
        func pad(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        func ratio(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }
        func count(_ value: Double) -> String {
            value >= 10_000 ? String(format: "%.0fk", value / 1_000) : value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
        }
        var lines: [String] = []
        let s = settings
        lines.append(
            "Fulcrum simulation: \(s.prefillUnits) prefill unit(s) x 32 GPUs + \(s.decodeUnits) decode unit(s) x 144 GPUs = "
                + "\(s.workers) workers; workload \(s.trace) (\(s.traceRequests) requests) at \(String(format: "%.2f", s.speed))x; "
                + String(format: "%.0f s", elapsedSeconds))
        if !s.failures.isEmpty { lines.append("failures: \(s.failures.joined(separator: ", "))") }
        if stoppedEarly { lines.append("stopped early: the \(requests.unfinished) requests in flight were not waited for") }
        let r = requests
        lines.append(
            "requests    \(r.arrived) arrived, \(r.finished) finished, \(r.unfinished) unfinished; \(r.resent) resent after a "
                + "dead rank lost them; \(r.heldBack) held back, \(r.noKVCapacity) without KV room, \(r.noEligibleWorkers) "
                + "without an eligible rank (offered again); Fulcrum's ledger: \(r.ledgerComplete)/\(r.ledgerChecked) sampled complete")
        let t = throughput
        lines.append(
            "throughput  \(String(format: "%.1f", t.requestsPerSecond)) requests/s; prefill \(count(t.prefillTokensPerSecond)) "
                + "new tokens/s; decode \(count(t.decodeTokensPerSecond)) tokens/s; \(count(t.telemetryReportsPerSecond)) "
                + "telemetry reports/s; \(count(t.assignmentsPerSecond)) assignments/s")
        lines.append(
            "balance     prefill efficiency \(ratio(balance.prefillEfficiency)), decode efficiency "
                + "\(ratio(balance.decodeEfficiency)) (Σ mean / Σ max rank cost over lock-step steps while arrivals ran); expert balancedness "
                + "\(ratio(balance.expertBalancednessFirst)) first, \(ratio(balance.expertBalancednessLast)) last, "
                + "\(ratio(balance.expertBalancednessMean)) mean (max/mean GPU load)")
        lines.append("  balance over time:")
        lines.append("       t  prefill  decode  experts  placement  on newest  errors")
        for point in timeline {
            lines.append(
                String(format: "  %5.0fs", point.seconds) + pad(ratio(point.prefillEfficiency), 9)
                    + pad(ratio(point.decodeEfficiency), 8) + pad(ratio(point.expertBalancedness), 9)
                    + pad("v\(point.placementVersion)", 11) + pad("\(point.workersOnNewest)/\(point.liveWorkers)", 11)
                    + pad("\(point.errors)", 8))
        }
        lines.append("control-plane calls (ms)   count  failed     p50     p90     p99   p99.9     max")
        for (name, values) in latencyMillis.sorted(by: { $0.key < $1.key }) {
            lines.append(
                "  " + name.padding(toLength: 22, withPad: " ", startingAt: 0)
                    + String(
                        format: " %7d  %6d  %6.2f  %6.2f  %6.2f  %6.2f  %6.1f", values.count, values.failed, values.p50,
                        values.p90, values.p99, values.p999, values.max))
        }
        for (name, values) in requestSeconds.sorted(by: { $0.key < $1.key }) {
            lines.append(
                String(format: "request %@ (s): p50 %.2f, p90 %.2f, p99 %.2f, max %.2f", name as NSString, values.p50, values.p90, values.p99, values.max))
        }
        let p = placements
        lines.append(
            "placements  \(p.published) new versions published and applied, \(p.acked) acknowledgements, "
                + "\(p.movedExperts) expert slots moved; \(p.liveUnits)/\(p.units.count) units live (every live rank acked)")
        for unit in p.units {
            let versions = unit.versions.map { version in
                String(
                    format: "v%d at %.0fs (%d ranks in %.1fs, %d moved%@)", version.version, version.firstReceived,
                    version.appliedBy, version.spreadSeconds, version.movedSlots,
                    (version.excludedRanks.isEmpty ? "" : ", excludes \(version.excludedRanks)") as NSString)
            }
            lines.append(
                "  \(unit.unit): current v\(unit.currentVersion.map(String.init) ?? "?"), "
                    + "\(unit.live == true ? "live" : "NOT live") (\(unit.acked ?? 0)/\(unit.liveRanks ?? 0) acked)"
                    + (versions.isEmpty ? "" : "; " + versions.joined(separator: "; ")))
        }
        for failure in failures {
            var text = "failure     \(failure.failure) on \(failure.worker) at \(String(format: "%.0f", failure.atSeconds)) s"
            if failure.kind == .kill {
                text += failure.detectedAfterSeconds.map { String(format: ": marked dead after %.1f s", $0) } ?? ": never marked dead"
                text += failure.silentSecondsAtDetection.map { String(format: " (%.1f s after its last report)", $0) } ?? ""
                text += failure.excludedAfterSeconds.map { String(format: ", excluded from a placement its unit applied after %.1f s", $0) } ?? ""
                text += "; assigned to it \(failure.assignedBeforeDetection ?? 0) times before, \(failure.assignedAfterDetection ?? 0) after"
            }
            if let state = failure.finalState { text += "; state now \(state)" }
            lines.append(text)
        }
        for process in processes {
            lines.append(String(format: "process     %@: %.2f cores, %.0f MiB resident", process.label as NSString, process.cpuCores, process.rssMiB))
        }
        if leaderChanges > 0 {
            lines.append("leader      \(leaderChanges) calls answered by a standby were sent again to the leader it named")
        }
        if errors > 0 {
            lines.append("errors      \(errors); first: " + errorSamples.prefix(5).joined(separator: " | "))
        }
        for check in checks {
            lines.append("\(check.passed ? "PASS" : "FAIL")        \(check.name): \(check.detail)")
        }
        return lines.joined(separator: "\n")
    }
}
