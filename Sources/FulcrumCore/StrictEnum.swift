/// Enums that arrive in API bodies: an unknown value fails with the list of accepted ones, which Foundation's
/// synthesized decoding does not say.
public protocol StrictEnum: RawRepresentable<String>, CaseIterable, Codable {}

extension StrictEnum {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let value = Self(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "must be one of \(Self.allCases.map(\.rawValue).joined(separator: ", ")), got '\(raw)'"
            )
        }
        self = value
    }
}

extension Role: StrictEnum {}
extension WorkerState: StrictEnum {}
