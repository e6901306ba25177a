/// A failure scenario of a run: `kill:AT`, `slow:AT[:FACTOR]` or `delay:AT[:SECONDS]`, each optionally `=WORKER`.
/// - kill: the worker dies AT seconds in: it stops reporting and polling, and the requests it held are lost.
/// - slow: from AT on the worker's steps take FACTOR times as long (default 3): its whole unit waits for it.
/// - delay: from AT on the worker's reports arrive SECONDS late (default 3, past the 2 s staleness limit).
/// Without `=WORKER` each kind picks its own rank of the first prefill unit (5, 9, 13), or of the first decode unit
/// when there is no prefill unit.
public struct Failure: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        case kill, slow, delay
    }

    public var kind: Kind
    public var at: Double
    /// Slowdown factor for `slow`, seconds late for `delay`.
    public var amount: Double
    public var worker: String?

    public init(kind: Kind, at: Double, amount: Double? = nil, worker: String? = nil) {
        self.kind = kind
        self.at = at
        self.amount = amount ?? (kind == .slow ? 3 : kind == .delay ? 3 : 0)
        self.worker = worker
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(parsing text: String) throws(Invalid) {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let (spec, worker) = (parts[0], parts.count > 1 ? parts[1] : nil)
        let fields = spec.split(separator: ":").map(String.init)
        guard let first = fields.first, let kind = Kind(rawValue: first), (2...3).contains(fields.count) else {
            throw Invalid(description: "'\(text)': expected kill:AT, slow:AT[:FACTOR] or delay:AT[:SECONDS], optionally =WORKER")
        }
        guard let at = Double(fields[1]), at >= 0, at.isFinite else {
            throw Invalid(description: "'\(text)': AT must be seconds into the run, at least 0")
        }
        var amount: Double?
        if fields.count == 3 {
            guard kind != .kill, let value = Double(fields[2]), value.isFinite else {
                throw Invalid(description: "'\(text)': kill takes no amount; slow takes a factor, delay seconds")
            }
            guard kind == .slow ? (1...100).contains(value) : (0...60).contains(value) else {
                throw Invalid(description: "'\(text)': the slowdown must be 1-100, the delay 0-60 seconds")
            }
            amount = value
        }
        if let worker, worker.isEmpty || worker.contains("=") {
            throw Invalid(description: "'\(text)': =WORKER must name one worker")
        }
        self.init(kind: kind, at: at, amount: amount, worker: worker)
    }

    /// The worker it strikes in `shape`.
    func target(in shape: ClusterShape) -> ClusterShape.Worker? {
        if let worker { return shape.workers.first { $0.id == worker } }
        guard let unit = shape.units(.prefill).first ?? shape.units(.decode).first else { return nil }
        let rank = (kind == .kill ? 5 : kind == .slow ? 9 : 13) % unit.gpus
        return shape.workers.first { $0.unit.id == unit.id && $0.rank == rank }
    }

    public var description: String {
        switch kind {
        case .kill: "kill:\(at.compact)" + (worker.map { "=\($0)" } ?? "")
        case .slow, .delay: "\(kind.rawValue):\(at.compact):\(amount.compact)" + (worker.map { "=\($0)" } ?? "")
        }
    }
}

extension Double {
    /// 20 for 20.0, 2.5 for 2.5.
    var compact: String { rounded() == self && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}
