import FulcrumServer
import FulcrumTestSupport
import Foundation
import Logging
import Testing

/// Bytes the HTTP parser cannot read get the same JSON error body as every other refusal (issue 16, item 7), not
/// an empty 400, and a bad request pipelined behind a good one does not cut the good one's answer off.
@Suite("Malformed HTTP requests")
struct MalformedRequestTests {
    /// The socket is read on a thread of its own: a blocking read on the cooperative pool would starve the
    /// in-process server's handlers on a 2-core machine.
    static func live<T: Sendable>(_ body: @Sendable (Int) async throws -> T) async throws -> T {
        try await Serving.withLive(FulcrumConfiguration(port: 0, logLevel: .critical), logger: TestDatabases.logger) { port in
            // Start-up (the registry's load) runs beside the listening server.
            _ = try await waitUntil(within: .seconds(30)) {
                try await offPool {
                    try HalfSentClient(port: port, sending: "GET /readyz HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
                        .answerUntilClosed(within: .seconds(5))
                }.hasPrefix("HTTP/1.1 200")
            }
            return try await body(port)
        }
    }

    /// The status line and the decoded `error` object of the last response in `answer`.
    static func lastError(in answer: String) -> (status: String, error: [String: Any]?) {
        let responses = answer.components(separatedBy: "HTTP/1.1 ").filter { !$0.isEmpty }
        guard let last = responses.last, let split = last.range(of: "\r\n\r\n") else { return ("", nil) }
        let status = String(last.prefix(3))
        let body = Data(last[split.upperBound...].utf8)
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        return (status, object?["error"] as? [String: Any])
    }

    static let unreadable: [(String, [UInt8])] = [
        ("UTF-8 in the path", Array("GET /v1/units/".utf8) + [0xC3, 0xA9] + Array(" HTTP/1.1\r\nHost: f\r\n\r\n".utf8)),
        ("a lone 0xFF in the path", Array("GET /healthz".utf8) + [0xFF] + Array(" HTTP/1.1\r\nHost: f\r\n\r\n".utf8)),
        ("a control byte in the path", Array("GET /v1/units/".utf8) + [0x01] + Array(" HTTP/1.1\r\nHost: f\r\n\r\n".utf8)),
        ("a space in the path", Array("GET /v1/units/a b HTTP/1.1\r\nHost: f\r\n\r\n".utf8)),
        ("no request line", Array("GARBAGE\r\n\r\n".utf8)),
        ("a raw byte in a header name", Array("GET /healthz HTTP/1.1\r\nBad".utf8) + [0xFF] + Array("Name: 1\r\n\r\n".utf8)),
    ]

    @Test(arguments: 0..<unreadable.count)
    func anUnreadableRequestGetsTheJSONErrorBody(_ index: Int) async throws {
        let (name, bytes) = Self.unreadable[index]
        let answer = try await Self.live { port in
            try await offPool { try HalfSentClient(port: port, sendingBytes: bytes).answerUntilClosed(within: .seconds(5)) }
        }
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(name): \(answer)")
        #expect(answer.lowercased().contains("content-type: application/json"), "\(name)")
        #expect(answer.lowercased().contains("connection: close"), "\(name)")
        #expect(Self.lastError(in: answer).error?["code"] as? String == "malformed_request", "\(name): \(answer)")
    }

    @Test func aBadRequestPipelinedBehindAGoodOneIsAnsweredAfterIt() async throws {
        let bytes = Array("GET /healthz HTTP/1.1\r\nHost: f\r\n\r\nGET /".utf8) + [0xFF] + Array(" HTTP/1.1\r\nHost: f\r\n\r\n".utf8)
        let answer = try await Self.live { port in
            try await offPool { try HalfSentClient(port: port, sendingBytes: bytes).answerUntilClosed(within: .seconds(5)) }
        }
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(answer.contains(#"{"status":"ok"}"#))
        let last = Self.lastError(in: answer)
        #expect(last.status == "400")
        #expect(last.error?["code"] as? String == "malformed_request", "\(answer)")
    }

    /// A route that answers before reading the body (here 401, no token) gives the one answer; the broken body
    /// behind it closes the connection without a second, empty one.
    @Test func aBrokenBodyAfterAnAnswerGetsNoSecondAnswer() async throws {
        let request = "POST /v1/units HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n"
        var configuration = FulcrumConfiguration(port: 0, logLevel: .critical)
        configuration.tokens = TestTokens.all
        let answer = try await Serving.withLive(configuration, logger: TestDatabases.logger) { port in
            try await offPool { try HalfSentClient(port: port, sending: request).answerUntilClosed(within: .seconds(5)) }
        }
        #expect(answer.components(separatedBy: "HTTP/1.1 ").filter { !$0.isEmpty }.count == 1, "\(answer.debugDescription)")
        #expect(answer.hasPrefix("HTTP/1.1 401") || answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
    }

    @Test func aBodyWithBrokenChunkFramingIsA400NotA500() async throws {
        let request = "POST /v1/units HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n"
        let answer = try await Self.live { port in
            try await offPool { try HalfSentClient(port: port, sending: request).answerUntilClosed(within: .seconds(5)) }
        }
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(Self.lastError(in: answer).error?["code"] as? String == "malformed_request", "\(answer)")
    }
}
