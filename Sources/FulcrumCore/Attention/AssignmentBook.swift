import DequeModule

/// The requests a balancer has assigned, remembered for a while by id: a gateway that retries an id gets its first
/// answer, and a finish finds the rank it leaves. Bounded in time and in size, the oldest forgotten first. `Entry`
/// is what a caller keeps per request; `Instant` is whatever clock it passes (the service a monotonic one, a
/// benchmark simulated seconds).
public struct AssignmentBook<Entry: Sendable, Instant: Comparable & Sendable>: Sendable {
    public private(set) var entries: [String: Entry] = [:]
    private var remembered: [String: Instant] = [:]
    private var order = Deque<(id: String, at: Instant)>()

    public init() {}

    public var count: Int { entries.count }

    public subscript(id: String) -> Entry? {
        get { entries[id] }
        set {
            // Changes an entry it holds; an id it does not hold is remembered only through `remember`.
            guard entries[id] != nil, let newValue else { return }
            entries[id] = newValue
        }
    }

    /// Remembers (or replaces) what was assigned to `id` at `at`.
    public mutating func remember(_ id: String, _ entry: Entry, at: Instant) {
        entries[id] = entry
        remembered[id] = at
        order.append((id, at))
    }

    /// The entries already held for these ids (a retry), and the positions of the ids never seen.
    public func lookup(_ ids: [String]) -> (known: [Entry?], fresh: [Int]) {
        var known = [Entry?](repeating: nil, count: ids.count)
        var fresh: [Int] = []
        for (index, id) in ids.enumerated() {
            if let entry = entries[id] {
                known[index] = entry
            } else {
                fresh.append(index)
            }
        }
        return (known, fresh)
    }

    /// Forgets what was remembered at or before `cutoff`, and the oldest beyond `limit` entries.
    public mutating func expire(before cutoff: Instant, limit: Int) {
        while let first = order.first, first.at <= cutoff || entries.count > limit {
            order.removeFirst()
            // Only the listing of an id's current entry removes it (a re-remembered id is listed again).
            if remembered[first.id] == first.at {
                entries[first.id] = nil
                remembered[first.id] = nil
            }
        }
    }
}
