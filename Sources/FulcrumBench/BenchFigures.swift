import FulcrumSimulator
import FulcrumCore
import Foundation

/// What `fulcrum bench protocol` measured, and whether it met the targets.
public struct BenchFigures: Encodable, Sendable {
    var workers: Int
    var units: Int
    var reportsSent: Int
    var reportsPerSecond: Double
    var latencyMillis: Percentiles
    var maxScheduleLagMillis: Double
    var httpErrors: Int
    var answeredDuplicate: Int
    var lostReports: Int
    var doubleApplied: Int
    var wakeMillis: Percentiles?
    /// How long the publish requests themselves took (a 58 x 288 table each, all units at once).
    var publishMillis: Percentiles?
    var pollsWithoutNewVersion: Int
    var acksOfNewVersion: Int
    var liveUnits: Int
    var serverCPUCores: Double?
    var serverRSSMiB: Double?
    /// The load generator's own CPU: on one machine it competes with the server for the same cores.
    var loadGeneratorCPUCores: Double?
    public var passed: Bool

    struct Percentiles: Encodable {
        var p50: Double
        var p90: Double
        var p99: Double
        var p999: Double
        var max: Double

        init?(_ values: [Double]) {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            func at(_ q: Double) -> Double { percentile(sorted, q) }
            p50 = at(0.5)
            p90 = at(0.9)
            p99 = at(0.99)
            p999 = at(0.999)
            max = sorted[sorted.count - 1]
        }
    }

    init(
        parts: [BenchPart], workers: Int, units: Int, rate: Double, duration: Double, check: BenchFleet.Check,
        cpu: Double?, rssMiB: Double?, clientCPU: Double?
    ) {
        var latencies: [Double] = []
        var sent = 0
        var errors = 0
        var notAccepted = 0
        var lag = Duration.zero
        var started: ContinuousClock.Instant?
        var finished: ContinuousClock.Instant?
        var receipts: [Poller.Receipt] = []
        var published: [String: (sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)] = [:]
        for part in parts {
            switch part {
            case .telemetry(let result):
                latencies += result.latenciesMicros.map { Double($0) / 1_000 }
                sent += result.sent
                errors += result.errors
                notAccepted += result.notAccepted
                lag = max(lag, result.maxLag)
                started = min(started ?? result.started, result.started)
                finished = max(finished ?? result.finished, result.finished)
            case .poller(let list):
                receipts += list
            case .published(let times):
                published = times
            }
        }
        let rounds = Int(duration * rate)
        self.workers = workers
        self.units = units
        reportsSent = sent
        // Over the time the reports really took: senders that fall behind their schedule stretch it.
        let elapsed = started.flatMap { s in finished.map { $0 - s } } ?? .seconds(duration)
        let elapsedSeconds = elapsed.seconds
        reportsPerSecond = Double(sent) / max(elapsedSeconds, duration)
        latencyMillis = Percentiles(latencies) ?? Percentiles([0])!
        maxScheduleLagMillis = lag.seconds * 1_000
        httpErrors = errors
        answeredDuplicate = notAccepted
        lostReports = check.lastSeq.values.reduce(0) { $0 + max(0, rounds - $1) }
        doubleApplied = check.duplicates + check.lastSeq.values.filter { $0 > rounds }.count
        let wakes = receipts.filter { $0.version == 2 }.compactMap { receipt -> Double? in
            guard let sentAt = published[receipt.unit]?.sent else { return nil }
            let d = receipt.at - sentAt
            return d.seconds * 1_000
        }
        wakeMillis = Percentiles(wakes)
        publishMillis = Percentiles(
            published.values.map { let d = $0.answered - $0.sent
                return d.seconds * 1_000 })
        pollsWithoutNewVersion = workers - wakes.count
        acksOfNewVersion = check.ackedNewest
        liveUnits = check.liveUnits
        serverCPUCores = cpu.map { $0 / duration }
        serverRSSMiB = rssMiB
        loadGeneratorCPUCores = clientCPU.map { $0 / duration }
        passed =
            reportsPerSecond >= 0.97 * rate * Double(workers) && latencyMillis.p99 < 20 && lostReports == 0 && doubleApplied == 0 && httpErrors == 0
            && pollsWithoutNewVersion == 0 && (wakeMillis?.max ?? .infinity) < 1_000 && liveUnits == units
    }

    public var text: String {
        func f(_ value: Double) -> String { String(format: "%.2f", value) }
        let l = latencyMillis
        var lines = [
            "workers \(workers) in \(units) units",
            "telemetry: \(reportsSent) reports, \(f(reportsPerSecond))/s; latency ms p50 \(f(l.p50)) p90 \(f(l.p90)) "
                + "p99 \(f(l.p99)) p99.9 \(f(l.p999)) max \(f(l.max)); worst schedule lag \(f(maxScheduleLagMillis)) ms",
            "correctness: \(lostReports) lost, \(doubleApplied) double-applied, \(answeredDuplicate) answered as "
                + "duplicates, \(httpErrors) HTTP errors",
        ]
        if let w = wakeMillis {
            lines.append(
                "placement wake-up after publish, ms: p50 \(f(w.p50)) p99 \(f(w.p99)) max \(f(w.max)); "
                    + "\(pollsWithoutNewVersion) polls missed it; \(acksOfNewVersion) acks; \(liveUnits)/\(units) units live")
            if let p = publishMillis {
                lines.append("publish requests (\(units) at once), ms: p50 \(f(p.p50)) max \(f(p.max))")
            }
        } else {
            lines.append("placement wake-up: no poll received the new version")
        }
        if let cpu = serverCPUCores, let rss = serverRSSMiB {
            lines.append("fulcrum serve: \(f(cpu)) cores busy on average, \(f(rss)) MiB resident")
        }
        if let client = loadGeneratorCPUCores {
            lines.append("load generator: \(f(client)) cores busy on average (same machine: \(ProcessInfo.processInfo.activeProcessorCount) cores)")
        }
        lines.append(
            passed
                ? "PASS"
                : "FAIL (targets: the scheduled rate sustained, p99 < 20 ms, nothing lost or doubled, every poll woken < 1 s)")
        return lines.joined(separator: "\n")
    }
}

