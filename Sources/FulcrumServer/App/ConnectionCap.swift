import Hummingbird
import HummingbirdCore
import Synchronization

/// Open HTTP connections and the cap on them, for metrics.
public final class ConnectionFigures: Sendable {
    let open = Atomic<Int>(0)
    /// Times the listener stopped accepting because the cap was reached.
    let capReached = Atomic<Int>(0)

    public init() {}

    public var openConnections: Int { open.load(ordering: .relaxed) }
    public var timesCapReached: Int { capReached.load(ordering: .relaxed) }
}

/// Caps concurrent connections. At the cap Hummingbird stops accepting: a new connection waits in the listen
/// backlog until one closes (past the backlog the kernel refuses it), so thousands of idle or slow clients cannot
/// take every file descriptor and starve the workers' own connections.
struct ConnectionCap: AvailableConnectionsDelegate {
    let maximum: Int
    let figures: ConnectionFigures

    mutating func connectionOpened() { figures.open.add(1, ordering: .relaxed) }
    mutating func connectionClosed() { figures.open.subtract(1, ordering: .relaxed) }

    func isAcceptingNewConnections() -> Bool {
        guard figures.open.load(ordering: .relaxed) < maximum else {
            figures.capReached.add(1, ordering: .relaxed)
            return false
        }
        return true
    }
}
