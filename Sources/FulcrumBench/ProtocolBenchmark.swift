import FulcrumSimulator
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// `fulcrum bench protocol`: DeepSeek's peak fleet against a running Fulcrum. Registers the workers, parks one long
/// poll per worker, sends telemetry from all of them at a fixed rate, publishes a new placement for every unit
/// midway, and checks that no report was lost or applied twice and how fast every parked poll got the version.
public struct ProtocolBenchmark: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The Fulcrum process, to report its CPU time and memory.
    public var serverPID: Int32?
    /// Workers to simulate; DeepSeek's peak was 278 nodes x 8 GPUs.
    public var workers = 2_224
    /// Telemetry reports per worker per second.
    public var rate = 10.0
    /// Seconds of telemetry.
    public var duration = 30.0
    /// Seconds into the telemetry at which every unit gets a new placement.
    public var publishAt = 10.0
    /// Connections that carry telemetry (each worker's reports go over one of them, in turn).
    public var connections = 128

    public init() {}

    var serverFigures: ProcessFigures? { serverPID.flatMap(ProcessFigures.init(pid:)) }

    /// Runs the load; the figures say whether every target was met.
    public func run() async throws -> BenchFigures {
        let (host, port) = (self.host, self.port)
        let fleet = BenchFleet(workers: workers, tag: String(UUID().uuidString.prefix(6)).lowercased())
        let clock = ContinuousClock()

        print("registering \(fleet.workers.count) workers in \(fleet.units.count) units …")
        try await fleet.register(host: host, port: port, connections: connections)

        let cpuBefore = serverFigures
        let selfBefore = ProcessFigures(pid: getpid())
        let ready = Counter()
        let stop = StopSignal()
        let results = try await withThrowingTaskGroup(of: BenchPart.self) { group in
            for worker in fleet.workers {
                group.addTask { .poller(try await Poller(worker: worker, host: host, port: port).run(ready: ready, stop: stop)) }
            }
            while ready.value < fleet.workers.count { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(500))  // let the last polls park
            print("\(fleet.workers.count) long polls parked; telemetry at \(rate) Hz per worker for \(duration) s …")

            let start = clock.now + .milliseconds(100)
            for index in 0..<connections {
                let mine = stride(from: index, to: fleet.workers.count, by: connections).map { fleet.workers[$0] }
                group.addTask {
                    .telemetry(
                        try await TelemetrySender(
                            workers: mine, total: fleet.workers.count, rate: rate, duration: duration, start: start
                        ).run(host: host, port: port))
                }
            }
            group.addTask {
                try await clock.sleep(until: start + .seconds(publishAt))
                return .published(try await fleet.publishAll(host: host, port: port))
            }
            var parts: [BenchPart] = []
            var runningSenders = connections + 1
            while runningSenders > 0, let part = try await group.next() {
                parts.append(part)
                runningSenders -= 1
            }
            try await Task.sleep(for: .seconds(1))  // acks and last polls settle
            stop.set()
            group.cancelAll()
            while let part = try await group.next() { parts.append(part) }
            return parts
        }
        let cpuAfter = serverFigures
        let selfAfter = ProcessFigures(pid: getpid())
        let check = try await fleet.verify(host: host, port: port)

        let figures = BenchFigures(
            parts: results, workers: fleet.workers.count, units: fleet.units.count, rate: rate, duration: duration,
            check: check, cpu: cpuBefore.flatMap { before in cpuAfter.map { $0.cpuSeconds - before.cpuSeconds } },
            rssMiB: cpuAfter?.rssMiB,
            clientCPU: selfBefore.flatMap { before in selfAfter.map { $0.cpuSeconds - before.cpuSeconds } })
        return figures
    }
}

enum BenchPart: Sendable {
    case poller([Poller.Receipt])
    case telemetry(TelemetrySender.Result)
    case published([String: (sent: ContinuousClock.Instant, answered: ContinuousClock.Instant)])
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

final class StopSignal: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}
