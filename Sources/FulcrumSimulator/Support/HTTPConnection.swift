import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection: a request, then its whole response, in turn. Plain SwiftNIO, so the
/// simulator and the benchmarks measure Fulcrum rather than a client library.
public struct HTTPConnection {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var headers: HTTPHeaders
        public var body: ByteBuffer
    }

    public struct Closed: Error {}

    /// A standby that knows no leader answered; the next target gets the turn.
    public struct NoLeaderKnown: Error, CustomStringConvertible {
        public var description: String { "a standby that knows no leader answered" }
    }

    /// A standby answered: not an answer, the call goes again to the leader it named (`Endpoints.follow`). Only on
    /// a connection opened through `Endpoints`.
    public struct NotLeader: Error, CustomStringConvertible {
        public var leader: String
        public var description: String { "not the leader; the leader is \(leader)" }
    }

    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let host: String
    private let authorization: String?
    private var endpoints: Endpoints?

    /// `FULCRUM_TOKEN`, the token the command-line clients send when none is given.
    public static let environmentToken = ProcessInfo.processInfo.environment["FULCRUM_TOKEN"].flatMap {
        $0.isEmpty ? nil : $0
    }

    /// Opens a connection, runs `body` on it and closes it. `token` goes as `Authorization: Bearer` on every request.
    public static func with<Result: Sendable>(
        host: String, port: Int, token: String? = environmentToken, _ body: (inout HTTPConnection) async throws -> Result
    ) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = HTTPConnection(
                inbound: inbound.makeAsyncIterator(), outbound: outbound, host: host,
                authorization: token.map { "Bearer \($0)" })
            return try await body(&connection)
        }
    }

    /// As `with(host:port:)`, on the replica `endpoints` takes for the leader. A standby's `not_leader` throws
    /// `NotLeader` (the next connection goes to the leader it named); a replica that cannot be reached, or drops
    /// the connection, passes the turn to the next target.
    public static func with<Result: Sendable>(
        endpoints: Endpoints, token: String? = environmentToken, _ body: (inout HTTPConnection) async throws -> Result
    ) async throws -> Result {
        let endpoint = endpoints.current
        do {
            return try await with(host: endpoint.host, port: endpoint.port, token: token) { connection in
                connection.endpoints = endpoints
                return try await body(&connection)
            }
        } catch {
            if !(error is NotLeader || error is CancellationError || error is DecodingError || error is Simulation.SetupError) {
                endpoints.unreachable(endpoint)
            }
            throw error
        }
    }

    /// Runs `body` on the leader, again on another connection while a standby answers or a replica cannot be reached
    /// (a failover), for up to `patience`. For calls that may be repeated: reads, and writes that are idempotent.
    public static func onLeader<Result: Sendable>(
        _ endpoints: Endpoints, token: String? = environmentToken, patience: Duration = .seconds(15),
        _ body: (inout HTTPConnection) async throws -> Result
    ) async throws -> Result {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                return try await with(endpoints: endpoints, token: token, body)
            } catch {
                if error is CancellationError || error is DecodingError || error is Simulation.SetupError
                    || ContinuousClock.now > deadline
                {
                    throw error
                }
                // A standby named the leader: go at once. An unreachable replica: the next after a pause, so a
                // cluster between leaders is not hammered.
                try await Task.sleep(for: error is NotLeader ? .milliseconds(10) : .milliseconds(100))
            }
        }
    }

    public mutating func send(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer? = nil, headers extra: [(String, String)] = []
    ) async throws -> Response {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: host)
        if let authorization { head.headers.add(name: "Authorization", value: authorization) }
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        }
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        var parts: [HTTPClientRequestPart] = [.head(head)]
        if let body { parts.append(.body(.byteBuffer(body))) }
        parts.append(.end(nil))
        try await outbound.write(contentsOf: parts)

        var response = Response(status: .ok, headers: [:], body: ByteBuffer())
        while let part = try await inbound.next() {
            switch part {
            case .head(let head):
                response.status = head.status
                response.headers = head.headers
            case .body(var chunk):
                response.body.writeBuffer(&chunk)
            case .end:
                if response.status == .serviceUnavailable, let endpoints {
                    if let leader = response.headers["Fulcrum-Leader"].first {
                        endpoints.follow(leader)
                        throw NotLeader(leader: leader)
                    }
                    // A standby that knows no leader yet: another replica may.
                    if String(buffer: response.body).contains(#""code":"not_leader""#) {
                        throw NoLeaderKnown()
                    }
                }
                return response
            }
        }
        throw Closed()
    }
}
