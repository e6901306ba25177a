import FulcrumStore
import Testing

/// A store that serves every concern, as `PostgresStore` and `MemoryStore` do: what the contract suite runs
/// against, each suite exercising its concern's protocol.
public typealias StoreBackend = RegistryStore & PlacementStore & ProtocolHistoryStore & LedgerStore & OperationsStore & LeaseStore
    & StoreHealth

/// The store implementations one contract suite runs against. PostgreSQL is included when a local server is
/// configured (always under `scripts/test`).
public enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case postgres

    public static var available: [StoreKind] {
        TestDatabases.serverURL == nil ? [.memory] : [.memory, .postgres]
    }

    public var testDescription: String { rawValue }

    /// Runs `body` with an empty store of this kind, and cleans up after it.
    public func withStore<Result: Sendable>(_ body: @Sendable (any StoreBackend) async throws -> Result) async throws
        -> Result
    {
        switch self {
        case .memory:
            return try await body(MemoryStore())
        case .postgres:
            return try await withTestDatabase { url in
                try await withPostgresClient(url, maxConnections: 8, logger: TestDatabases.logger) { client in
                    try await body(
                        PostgresStore(client: client, migrations: try Migration.bundled(), logger: TestDatabases.logger))
                }
            }
        }
    }
}
