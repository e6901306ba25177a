import Foundation

/// Turns a finished run's measurements into its report, with the checks an end-to-end run must pass.
struct ReportBuilder {
    let settings: Simulation.Settings
    let shape: ClusterShape
    let speed: Double
    let context: SimulationContext
    let gateway: Gateway
    let run: RunState
    let verification: SetupClient.Verification
    let processes: [SimulationReport.Process]
    let elapsed: Double
    let stoppedEarly: Bool

    func report() -> SimulationReport {
        let totals = context.recorder.totals()
        let counts = totals.counts
        let seconds = max(elapsed, 1e-9)
        let timeline = run.timeline()
        let samples = run.expertSamples()
        let versions = context.placements.versions()

        var latency: [String: SimulationReport.Percentiles] = [:]
        for call in SimulationRecorder.Call.allCases {
            latency[call.rawValue] = .init(
                totals.latencies[call] ?? [], failed: totals.failedCalls[call] ?? 0, scale: 1e3)
        }
        var requestSeconds: [String: SimulationReport.Percentiles] = [:]
        requestSeconds["timeToFirstToken"] = .init(totals.ttft, failed: 0, scale: 1)
        requestSeconds["endToEnd"] = .init(totals.endToEnd, failed: 0, scale: 1)

        let units = shape.units.map { unit in
            let status = verification.units[unit.id]
            return SimulationReport.UnitPlacements(
                unit: unit.id, currentVersion: status?.version, live: status?.live, liveRanks: status?.liveRanks,
                acked: status?.acked, versions: versions[unit.id] ?? [])
        }
        let placements = SimulationReport.Placements(
            published: units.reduce(0) { $0 + $1.versions.count }, acked: counts.placementsApplied,
            movedExperts: counts.movedSlots, liveUnits: units.count { $0.live == true }, units: units)

        let killed = gateway.assignmentsToKilled()
        let failures = run.failures().map { struck in
            var outcome = SimulationReport.FailureOutcome(
                failure: struck.failure.description, kind: struck.failure.kind, worker: struck.worker,
                atSeconds: struck.at, finalState: verification.workerStates[struck.worker])
            if struck.failure.kind == .kill {
                outcome.detectedAfterSeconds = struck.detectedAt.map { $0 - struck.at }
                if let detected = struck.detectedAt, let last = struck.lastReportAt {
                    outcome.silentSecondsAtDetection = detected - last
                }
                outcome.assignedBeforeDetection = killed[struck.worker]?.before ?? 0
                outcome.assignedAfterDetection = killed[struck.worker]?.after ?? 0
                if let worker = shape.workers.first(where: { $0.id == struck.worker }) {
                    let excluding = versions[worker.unit.id]?.first {
                        $0.firstReceived >= struck.at && $0.excludedRanks.contains(worker.rank)
                    }
                    outcome.excludedAfterSeconds = excluding.map { $0.firstReceived + $0.spreadSeconds - struck.at }
                }
            }
            return outcome
        }

        var report = SimulationReport(
            settings: .init(
                target: settings.target, prefillUnits: settings.prefillUnits, decodeUnits: settings.decodeUnits,
                workers: shape.workers.count, trace: settings.trace.name, traceRequests: settings.trace.requests.count,
                speed: speed, durationSeconds: settings.duration, maxOutputTokens: settings.maxOutputTokens, telemetryIntervalSeconds: settings.telemetryInterval,
                workloadPeriodSeconds: settings.workloadPeriod,
                unitPolicy: policy, failures: settings.failures.map(\.description)),
            elapsedSeconds: elapsed, stoppedEarly: stoppedEarly,
            requests: .init(
                arrived: counts.arrived, prefillAssigned: counts.prefillAssigned, prefilled: counts.prefilled,
                decodeAssigned: counts.decodeAssigned, finished: counts.finished,
                unfinished: counts.arrived - counts.finished, resent: counts.resent, heldBack: counts.heldBack,
                noKVCapacity: counts.noCapacity, noEligibleWorkers: counts.noEligible,
                ledgerChecked: verification.ledgerChecked, ledgerComplete: verification.ledgerComplete),
            throughput: .init(
                requestsPerSecond: Double(counts.finished) / seconds,
                prefillTokensPerSecond: Double(totals.prefill.tokens) / seconds,
                decodeTokensPerSecond: Double(totals.decode.tokens) / seconds,
                telemetryReportsPerSecond: Double(totals.calls[.telemetry] ?? 0) / seconds,
                assignmentsPerSecond: Double(counts.prefillAssigned + counts.decodeAssigned) / seconds),
            balance: .init(
                prefillEfficiency: totals.prefillBalance.efficiency, decodeEfficiency: totals.decodeBalance.efficiency,
                expertBalancednessMean: samples.isEmpty ? nil : samples.reduce(0, +) / Double(samples.count),
                expertBalancednessFirst: timeline.first(where: { $0.expertBalancedness != nil })?.expertBalancedness,
                expertBalancednessLast: timeline.last(where: { $0.expertBalancedness != nil })?.expertBalancedness),
            timeline: timeline, latencyMillis: latency, requestSeconds: requestSeconds, placements: placements,
            failures: failures, processes: processes, errors: counts.errors + verification.problems.count,
            errorSamples: totals.errorSamples + verification.problems, leaderChanges: counts.leaderChanges, checks: [])
        report.checks = checks(report)
        return report
    }

    private var policy: [String: Double]? {
        var policy: [String: Double] = [:]
        policy["rebalanceIntervalSeconds"] = settings.rebalanceIntervalSeconds
        policy["windowSeconds"] = settings.windowSeconds
        return policy.isEmpty ? nil : policy
    }

    private func checks(_ report: SimulationReport) -> [SimulationReport.Check] {
        let requests = report.requests
        var checks: [SimulationReport.Check] = []
        // A run stopped before its drain leaves requests in flight: nothing to check there.
        if !report.stoppedEarly {
            checks.append(
                .init(
                    name: "every request assigned and finished", passed: requests.arrived > 0 && requests.unfinished == 0,
                    detail: "\(requests.finished) of \(requests.arrived) finished"))
        }
        checks += [
            .init(
                name: "Fulcrum's ledger has both phases finished", passed: requests.ledgerComplete == requests.ledgerChecked,
                detail: "\(requests.ledgerComplete) of \(requests.ledgerChecked) sampled requests"
                    + (verification.incomplete.isEmpty ? "" : "; not: \(verification.incomplete.prefix(5).joined(separator: ", "))")),
            .init(
                name: "every unit's placement acknowledged by all its live workers",
                passed: report.placements.liveUnits == shape.units.count,
                detail: "\(report.placements.liveUnits) of \(shape.units.count) units live"),
            .init(name: "no errors", passed: report.errors == 0, detail: "\(report.errors) errors"),
        ]
        // Once the units' policy has had time to act, the expert-parallel balancer must have beaten the start-up
        // table: a placement published, applied, and the measured expert balance better for it.
        if let interval = settings.rebalanceIntervalSeconds, elapsed >= interval + 5 {
            let first = report.balance.expertBalancednessFirst ?? 0
            let last = report.balance.expertBalancednessLast ?? .infinity
            let placed = report.placements.units.filter { !$0.versions.isEmpty }.count
            checks.append(
                .init(
                    name: "expert placement published, applied and better than the start-up table",
                    passed: placed == shape.units.count && last < first,
                    detail: "new placements in \(placed) of \(shape.units.count) units; expert balancedness "
                        + String(format: "%.2f first, %.2f last", first, last)))
        }
        for failure in report.failures where failure.kind == .kill {
            checks.append(
                .init(
                    name: "killed \(failure.worker) detected", passed: failure.detectedAfterSeconds != nil,
                    detail: failure.detectedAfterSeconds.map { String(format: "marked dead after %.1f s", $0) } ?? "never marked dead"))
            checks.append(
                .init(
                    name: "killed \(failure.worker) routed around", passed: failure.assignedAfterDetection == 0,
                    detail: "\(failure.assignedAfterDetection ?? 0) assignments after it was marked dead"))
            checks.append(
                .init(
                    name: "killed \(failure.worker) excluded from expert placement",
                    passed: failure.excludedAfterSeconds != nil,
                    detail: failure.excludedAfterSeconds.map { String(format: "applied by its unit %.1f s after the kill", $0) }
                        ?? "no applied placement excludes it"))
        }
        return checks
    }
}
