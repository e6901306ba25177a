import FulcrumServer
import FulcrumTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

/// Issue 16, item 11: a worker token bound to one worker or to units speaks only for those workers; a gateway token
/// bound to units assigns only in them. Out-of-scope calls are 403 `out_of_scope` and counted; unscoped tokens keep
/// working.
@Suite("Scoped tokens")
struct TokenScopeTests {
    static let boundToW0 = AccessToken(name: "host-w0", role: .worker, secret: "w0-secret", scope: .worker("w0"))
    static let decodeHosts = AccessToken(name: "decode-hosts", role: .worker, secret: "decode-secret", scope: .units(["decode-0"]))
    static let prefillGateway = AccessToken(name: "prefill-gw", role: .gateway, secret: "gw-secret", scope: .units(["prefill-0"]))

    @Test func scopesAreWrittenAndReadInTheConfigurationLine() throws {
        for token in [Self.boundToW0, Self.decodeHosts, Self.prefillGateway] {
            let parsed = AccessToken.parse(token.line, source: "test")
            #expect(parsed.problems.isEmpty && parsed.tokens == [token], "\(token.line)")
        }
        let hash = String(repeating: "a", count: 64)
        #expect(AccessToken.parse("g:gateway:\(hash):unit=a+b", source: "t").tokens.first?.scope == .units(["a", "b"]))
        for bad in ["x:admin:\(hash):unit=a", "x:gateway:\(hash):worker=w", "x:worker:\(hash):worker=", "x:worker:\(hash):unit=a+",
                    "x:worker:\(hash):node=3", "x:worker:\(hash):unit=a/b"] {
            #expect(AccessToken.parse(bad, source: "t").problems.count == 1, "\(bad)")
        }
    }

    static func telemetry(seq: Int) -> String {
        #"{"seq": \#(seq), "sentAt": "2026-11-22T10:00:00Z", "decode": {"kvTokensUsed": 10, "kvTokensCapacity": 400000, "runningRequests": 1}}"#
    }

    @Test func scopedTokensActOnlyWithinTheirScope() async throws {
        var configuration = FulcrumConfiguration(logLevel: .warning)
        configuration.tokens = TestTokens.all + [Self.boundToW0, Self.decodeHosts, Self.prefillGateway]
        try await runApp(configuration) { client in
            _ = try await client.request(.post, "/v1/units", body: unitJSON(id: "decode-0", role: "decode", nodes: 1))
            _ = try await client.request(.post, "/v1/units", body: unitJSON(id: "decode-1", role: "decode", nodes: 1))
            _ = try await client.request(.post, "/v1/units", body: unitJSON(id: "prefill-0", nodes: 1))
            _ = try await client.request(.post, "/v1/units", body: unitJSON(id: "prefill-1", nodes: 1))

            // A worker token bound to w0: registers and reports for w0 only.
            #expect(try await client.request(.put, "/v1/workers/w0", body: workerJSON(unit: "decode-1"), token: "w0-secret").status == .created)
            expectError(
                try await client.request(.put, "/v1/workers/w1", body: workerJSON(unit: "decode-1", gpu: 1), token: "w0-secret"),
                .forbidden, "out_of_scope")
            #expect(try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: 1), token: "w0-secret").status == .accepted)

            // A worker token bound to decode-0: its workers only, wherever they try to register.
            #expect(try await client.request(.put, "/v1/workers/d0", body: workerJSON(unit: "decode-0"), token: "decode-secret").status == .created)
            expectError(
                try await client.request(.put, "/v1/workers/d1", body: workerJSON(unit: "decode-1", gpu: 2), token: "decode-secret"),
                .forbidden, "out_of_scope")
            expectError(
                try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: 2), token: "decode-secret"),
                .forbidden, "out_of_scope")
            expectError(try await client.request(.get, "/v1/workers/w0/placement", token: "decode-secret"), .forbidden, "out_of_scope")
            expectError(
                try await client.request(.post, "/v1/workers/w0/placement/ack", body: #"{"version": 1}"#, token: "decode-secret"),
                .forbidden, "out_of_scope")
            #expect(try await client.request(.get, "/v1/workers/d0/placement", token: "decode-secret").status == .ok)
            // An unscoped worker token still speaks for any worker.
            #expect(try await client.request(.post, "/v1/workers/w0/telemetry", body: Self.telemetry(seq: 3), token: TestTokens.worker).status == .accepted)

            // A gateway bound to prefill-0 assigns there only, with or without ?unit=.
            for (index, unit) in ["prefill-0", "prefill-1"].enumerated() {
                _ = try await client.request(.put, "/v1/workers/p\(index)", body: workerJSON(unit: unit))
                let report = #"{"seq": 1, "sentAt": "2026-11-22T10:00:00Z", "prefill": {"queuedTokens": 0, "queuedRequests": 0, "attentionWork": 0}}"#
                #expect(try await client.request(.post, "/v1/workers/p\(index)/telemetry", body: report, token: TestTokens.worker).status == .accepted)
            }
            let batch = #"{"requests": [\#((0..<6).map { #"{"id": "r\#($0)", "inputTokens": 1000}"# }.joined(separator: ","))]}"#
            let answer = try await client.request(.post, "/v1/prefill/assignments", body: batch, token: "gw-secret")
            #expect(answer.status == .ok)
            let units = Set((answer["assignments"] as? [[String: Any]] ?? []).compactMap { $0["unit"] as? String })
            #expect(units == ["prefill-0"])
            expectError(
                try await client.request(.post, "/v1/prefill/assignments?unit=prefill-1", body: batch, token: "gw-secret"),
                .forbidden, "out_of_scope")
            // Requests of other units are not its to finish or look up.
            let other = try await client.request(
                .post, "/v1/prefill/assignments?unit=prefill-1", body: #"{"requests": [{"id": "elsewhere", "inputTokens": 10}]}"#,
                token: TestTokens.gateway)
            #expect(other.status == .ok)
            let finished = try await client.request(.post, "/v1/requests/finished", body: #"{"ids": ["r0", "elsewhere"]}"#, token: "gw-secret")
            #expect(finished["unknown"] as? [String] == ["elsewhere"])
            expectError(try await client.request(.get, "/v1/requests/elsewhere", token: "gw-secret"), .forbidden, "out_of_scope")
            #expect(try await client.request(.get, "/v1/requests/r0", token: "gw-secret").status == .ok)
            // Nor is a retry of another unit's request its to see: the answer would come from the book.
            expectError(
                try await client.request(
                    .post, "/v1/prefill/assignments", body: #"{"requests": [{"id": "elsewhere", "inputTokens": 10}]}"#,
                    token: "gw-secret"),
                .forbidden, "out_of_scope")

            // Eight refusals above, counted.
            let metrics = try await client.request(.get, "/v1/metrics")
            #expect((metrics["access"] as? [String: Any])?["outOfScopeRefusals"] as? Int == 8)
            let prometheus = String(decoding: try await client.raw(.get, "/metrics"), as: UTF8.self)
            #expect(prometheus.contains(#"fulcrum_auth_out_of_scope_total{role="worker"} 5"#), "\(prometheus)")
            #expect(prometheus.contains(#"fulcrum_auth_out_of_scope_total{role="gateway"} 3"#))
        }
    }
}
