import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// Runs the application beside other services (`fulcrum serve --simulate`'s simulated cluster, a test's workload) so
/// that nothing but a graceful shutdown ever stops the HTTP server.
///
/// Why: cancelling Hummingbird's server while connections are accepted but not yet served drops their
/// `NIOAsyncChannel`s unclosed, and NIO traps ("Deinited NIOAsyncWriter without calling finish()", apple/swift-nio
/// #2637, #3481). ServiceGroup's default answer to a service that throws or returns is to cancel the group, so a
/// companion failing while clients connect would crash the process. Here every service's end, a failure included,
/// shuts the group down gracefully: the server stops accepting, serves what it accepted, then the rest stop in
/// reverse order. The first failure is rethrown once everything has stopped.
public enum Serving {
    public static func run(
        _ app: some ApplicationProtocol, beside companions: [any Service] = [], signals: [UnixSignal] = [.sigterm, .sigint],
        logger: Logger
    ) async throws {
        let services = ([app] + companions).map {
            ServiceGroupConfiguration.ServiceConfiguration(
                service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        try await ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: signals, logger: logger)
        ).run()
    }

    /// Runs the application, calls `body` with its port once it listens, then shuts it down gracefully and waits
    /// for that, whether `body` returned or threw (what a test of a live server needs; HummingbirdTesting's live mode
    /// cancels the server when the test throws).
    public static func withLive<Result: Sendable>(
        _ configuration: FulcrumConfiguration, logger: Logger, _ body: @Sendable (Int) async throws -> Result
    ) async throws -> Result {
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let app = try await buildApplication(configuration, logger: logger) { listening.yield($0) }
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                          failureTerminationBehavior: .gracefullyShutdownGroup)
                ], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                // A server that fails to start ends the stream, so the wait for its port ends too.
                defer { listening.finish() }
                try await group.run()
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else {
                try await tasks.waitForAll()
                throw ServerNeverListened()
            }
            let outcome: Swift.Result<Result, any Error>
            do {
                outcome = .success(try await body(port))
            } catch {
                outcome = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return try outcome.get()
        }
    }

    public struct ServerNeverListened: Error {}
}
