import FulcrumCore
import Foundation

/// How the stores write the audit's before and after: ISO 8601 dates, keys sorted, so entries read the same from
/// either store.
public enum AuditCoding {
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    public static func value(_ value: some Encodable) -> JSONValue? {
        try? JSONValue.encoding(value, encoder: encoder)
    }
}
