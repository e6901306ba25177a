import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection of the load generator: a request, then its whole response, in turn. Plain
/// SwiftNIO, so the benchmark measures Fulcrum rather than a client library.
struct BenchConnection {
    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    struct Closed: Error {}

    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let host: String
    /// Sent as `Authorization: Bearer` on every request: an admin token, so one token serves every route.
    static let token = ProcessInfo.processInfo.environment["FULCRUM_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }

    static func with<Result: Sendable>(
        host: String, port: Int, _ body: (inout BenchConnection) async throws -> Result
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
            var connection = BenchConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound, host: host)
            return try await body(&connection)
        }
    }

    mutating func send(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer? = nil, headers extra: [(String, String)] = []
    ) async throws -> Response {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: host)
        if let token = Self.token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
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
