import FulcrumCore
import Foundation

/// Fulcrum's durable state, one protocol per concern. Only the composition root (`buildApplication`) holds all of
/// them; each service is given the one it needs. `PostgresStore` and `MemoryStore` implement every concern and pass
/// one contract suite.
public struct Stores: Sendable {
    public let registry: any RegistryStore
    public let placements: any PlacementStore
    public let history: any ProtocolHistoryStore
    public let ledger: any LedgerStore
    public let operations: any OperationsStore
    public let leases: any LeaseStore
    public let health: any StoreHealth

    /// Every concern from one backend: the concerns share its tables (or its memory) and its transactions.
    public init(
        _ backend: some RegistryStore & PlacementStore & ProtocolHistoryStore & LedgerStore & OperationsStore
            & LeaseStore & StoreHealth
    ) {
        registry = backend
        placements = backend
        history = backend
        ledger = backend
        operations = backend
        leases = backend
        health = backend
    }
}

/// Whether the store can serve.
public protocol StoreHealth: Sendable {
    func readiness() async -> Readiness
}

/// Whether a store can serve: reachable, and its schema is the one this build expects.
public struct Readiness: Hashable, Sendable {
    public var ready: Bool
    public var reason: String?

    public static let ready = Readiness(ready: true, reason: nil)

    public static func notReady(_ reason: String) -> Readiness {
        Readiness(ready: false, reason: reason)
    }
}

/// The store could not be reached or failed for reasons outside the request; it may succeed when retried.
public struct StoreUnavailable: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "store unavailable: \(reason)" }
}
