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

    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let host: String
    private let authorization: String?

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
                return response
            }
        }
        throw Closed()
    }
}
