import FulcrumCore
import Foundation
import Testing

@Suite("JSON parsing for the hot routes")
struct JSONValueTests {
    @Test func parsesEveryKindOfValueExactly() throws {
        let text = #" {"a": [1, -2, 9223372036854775807, -9223372036854775808, 1.5, 2e3, 9223372036854775808],"#
            + #" "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "t": true, "f": false, "n": null, "o": {}} "#
        let value = try JSONValue.parse(Array(text.utf8))
        #expect(
            value
                == .object([
                    "a": .array([
                        .int(1), .int(-2), .int(.max), .int(.min), .double(1.5), .double(2_000),
                        .double(9_223_372_036_854_775_808),
                    ]),
                    "s": .string("x\"\\/\u{8}\u{c}\n\r\té😀"), "t": .bool(true), "f": .bool(false), "n": .null,
                    "o": .object([:]),
                ]))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01x", "-", "1.", "1e", "\"abc", "\"\u{01}\"", "tru", "nul",
        "[1] 2", "\"\\x\"", "\"\\u12\"", "01", "-01", "{\"a\": 1, \"a\": 2}", "\"\\ud800\"", "\"a\\u0000b\"", String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
    ])
    func refusesWhatIsNotJSON(_ text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(Array(text.utf8)) }
    }

    /// Bytes that are not UTF-8 are refused, not replaced with U+FFFD and echoed back as if the client had sent it.
    @Test func stringsMustBeUTF8() throws {
        #expect(try JSONValue.parse([0x22, 0xC3, 0xA9, 0x22]) == .string("é"))
        #expect(try JSONValue.parse([0x22, 0xC3, 0xA9, 0x5C, 0x6E, 0x22]) == .string("é\n"))
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22], [0x7B, 0x22, 0xC0, 0xAF, 0x22, 0x3A, 0x31, 0x7D]] {
            #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(bytes) }
        }
    }

    @Test func agreesWithFoundationOnARealReport() throws {
        let text = #"{"seq": 17, "sentAt": "2026-11-22T20:30:00.250Z", "decode": {"kvTokensUsed": 120000, "#
            + #""kvTokensCapacity": 600000, "runningRequests": 24}, "experts": {"windowStart": "2026-11-22T20:29:59Z", "#
            + #""windowEnd": "2026-11-22T20:30:00+01:00", "slotTokens": [[1, 2], [3, 4]]}, "finished": ["r1"]}"#
        let report = try TelemetryReport(json: try JSONValue.parse(Array(text.utf8)))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let string = try decoder.singleValueContainer().decode(String.self)
            return try Date.ISO8601FormatStyle(includingFractionalSeconds: string.contains(".")).parse(string)
        }
        let foundation = try decoder.decode(TelemetryReport.self, from: Data(text.utf8))
        #expect(report == foundation)
        #expect(report.experts?.windowEnd == Date(timeIntervalSince1970: 1_795_375_800))
    }

    @Test(arguments: [
        ("2026-11-22T20:30:00Z", 1_795_379_400.0), ("2026-11-22T20:30:00.5Z", 1_795_379_400.5),
        ("2026-11-22T21:30:00+01:00", 1_795_379_400.0), ("1970-01-01T00:00:00Z", 0), ("2000-02-29T00:00:00Z", 951_782_400),
    ])
    func timestamps(_ text: String, _ seconds: Double) {
        #expect(ISO8601.parse(text) == Date(timeIntervalSince1970: seconds))
    }

    @Test(arguments: ["2026-13-01T00:00:00Z", "2026-11-22 20:30:00", "2026-11-22T20:30:00", "yesterday", "2026-11-22T20:30:00.Z"])
    func badTimestamps(_ text: String) {
        #expect(ISO8601.parse(text) == nil)
    }
}
