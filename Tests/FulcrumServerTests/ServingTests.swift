import FulcrumServer
import FulcrumTestSupport
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP server must only ever stop gracefully: cancelled while connections are accepted but not yet served, it
/// drops their channels unclosed and NIO traps ("Deinited NIOAsyncWriter without calling finish()"), which killed a
/// test process once. Each test here ends a live server at the worst moment, with dozens of connections the kernel
/// has accepted and the server has not yet served; a regression crashes the test process rather than failing a line.
@Suite("Serving stops the server gracefully in every order")
struct ServingTests {
    struct Provoked: Error {}

    static let rounds = 5
    static let connections = 48

    /// A test whose body throws while clients connect (what `HummingbirdTesting`'s live mode answers by cancelling
    /// the server).
    @Test func aLiveServerWhoseBodyThrowsWhileClientsConnectStopsCleanly() async throws {
        for _ in 0..<Self.rounds {
            let sockets = Sockets()
            await #expect(throws: Provoked.self) {
                try await Serving.withLive(FulcrumConfiguration(port: 0, logLevel: .critical), logger: TestDatabases.logger) {
                    port in
                    sockets.connect(port: port, count: Self.connections)
                    throw Provoked()
                }
            }
            #expect(sockets.connected == Self.connections)
            sockets.closeAll()
        }
    }

    /// `fulcrum serve --simulate`'s order: a companion service fails while clients connect (ServiceGroup's default
    /// would cancel the server).
    @Test func aCompanionThatFailsWhileClientsConnectStopsTheServerGracefully() async throws {
        for _ in 0..<Self.rounds {
            let sockets = Sockets()
            let (ports, listening) = AsyncStream.makeStream(of: Int.self)
            let app = try await buildApplication(
                FulcrumConfiguration(port: 0, logLevel: .critical), logger: TestDatabases.logger
            ) { listening.yield($0) }
            let companion = FailingCompanion(ports: ports, sockets: sockets, connections: Self.connections)
            await #expect(throws: Provoked.self) {
                try await Serving.run(app, beside: [companion], signals: [], logger: TestDatabases.logger)
            }
            #expect(sockets.connected == Self.connections)
            sockets.closeAll()
        }
    }

    /// A companion that returns stops the server too (a `--duration` simulation ending), gracefully.
    @Test func aCompanionThatEndsStopsTheServer() async throws {
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let app = try await buildApplication(FulcrumConfiguration(port: 0, logLevel: .critical), logger: TestDatabases.logger) {
            listening.yield($0)
        }
        final class Companion: Service, Sendable {
            let ports: AsyncStream<Int>
            let status = Mutex(0)
            init(ports: AsyncStream<Int>) { self.ports = ports }
            func run() async throws {
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next(), let url = URL(string: "http://127.0.0.1:\(port)/healthz") else { return }
                let (_, response) = try await URLSession.shared.data(from: url)
                status.withLock { $0 = (response as? HTTPURLResponse)?.statusCode ?? 0 }
            }
        }
        let companion = Companion(ports: ports)
        try await Serving.run(app, beside: [companion], signals: [], logger: TestDatabases.logger)
        #expect(companion.status.withLock { $0 } == 200)
    }

    struct FailingCompanion: Service {
        let ports: AsyncStream<Int>
        let sockets: Sockets
        let connections: Int

        func run() async throws {
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { return }
            sockets.connect(port: port, count: connections)
            throw Provoked()
        }
    }
}

/// Plain blocking TCP connections to 127.0.0.1: each `connect` returns once the kernel has accepted it, before the
/// server has picked it up, which is the window the tests aim at.
final class Sockets: Sendable {
    private let descriptors = Mutex<[Int32]>([])

    var connected: Int { descriptors.withLock { $0.count } }

    func connect(port: Int, count: Int) {
        for _ in 0..<count {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { continue }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port)).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if result == 0 {
                descriptors.withLock { $0.append(descriptor) }
            } else {
                close(descriptor)
            }
        }
    }

    func closeAll() {
        descriptors.withLock {
            for descriptor in $0 { close(descriptor) }
            $0.removeAll()
        }
    }
}
