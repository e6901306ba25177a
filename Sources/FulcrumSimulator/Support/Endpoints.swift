import Foundation
import Synchronization

/// The Fulcrum replicas a client was given (`--target URL,URL,...`) and the one it takes for the leader: a standby's
/// 503 `not_leader` names the leader in its `Fulcrum-Leader` header, which the next connection goes to; a replica
/// that cannot be reached passes the turn to the next one in the list. This is all a worker or a gateway needs to
/// follow a failover: no list of replicas is kept in step with the cluster's.
public final class Endpoints: Sendable {
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

        /// An `http://host[:port]` URL; nil for anything else.
        public init?(url: String) {
            guard let components = URLComponents(string: url.trimmingCharacters(in: .whitespaces)),
                components.scheme == "http", let host = components.host, !host.isEmpty,
                components.path.isEmpty || components.path == "/", components.query == nil
            else { return nil }
            self.host = host
            self.port = components.port ?? 80
        }
    }

    /// The replicas as given, in order.
    public let targets: [Endpoint]
    private let state: Mutex<(current: Endpoint, changes: Int)>

    /// `list` is one URL or several separated by commas.
    public init(_ list: String) throws(Simulation.SetupError) {
        var targets: [Endpoint] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            guard let endpoint = Endpoint(url: String(part)) else {
                throw Simulation.SetupError(
                    description: "--target must be a URL like http://127.0.0.1:8080, or several separated by commas; "
                        + "'\(part)' is not")
            }
            if !targets.contains(endpoint) { targets.append(endpoint) }
        }
        guard let first = targets.first else {
            throw Simulation.SetupError(description: "--target must name at least one URL")
        }
        self.targets = targets
        state = Mutex((first, 0))
    }

    /// Where the next connection goes.
    public var current: Endpoint { state.withLock { $0.current } }

    /// How often the client has moved to another replica.
    public var changes: Int { state.withLock { $0.changes } }

    /// A standby named `url` as the leader. False when that is where the client already was (a stale answer).
    @discardableResult
    public func follow(_ url: String) -> Bool {
        guard let leader = Endpoint(url: url) else { return false }
        return state.withLock { state in
            guard state.current != leader else { return false }
            state.current = leader
            state.changes += 1
            return true
        }
    }

    /// `endpoint` could not be reached: the next target in the list gets the turn, unless another caller has moved
    /// on already.
    public func unreachable(_ endpoint: Endpoint) {
        state.withLock { state in
            guard state.current == endpoint, targets.count > 1 else { return }
            let index = targets.firstIndex(of: endpoint).map { ($0 + 1) % targets.count } ?? 0
            state.current = targets[index]
            state.changes += 1
        }
    }
}
