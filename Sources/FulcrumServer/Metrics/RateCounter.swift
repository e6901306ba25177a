/// Events per second over the last `window` seconds, from per-second buckets, plus the running total.
struct RateCounter: Sendable {
    static let window = 10
    private var buckets = [Int](repeating: 0, count: RateCounter.window + 1)
    private var second: Int64?
    private(set) var total = 0

    mutating func add(_ count: Int, at instant: ContinuousClock.Instant) {
        total += count
        let now = Self.epochSecond(instant)
        advance(to: now)
        buckets[Int(now % Int64(buckets.count))] += count
    }

    /// The mean rate over the last `window` whole seconds.
    mutating func perSecond(at instant: ContinuousClock.Instant) -> Double {
        let now = Self.epochSecond(instant)
        advance(to: now)
        let current = Int(now % Int64(buckets.count))
        let sum = buckets.indices.filter { $0 != current }.reduce(0) { $0 + buckets[$1] }
        return Double(sum) / Double(Self.window)
    }

    private mutating func advance(to now: Int64) {
        if let second, now > second {
            for step in 1...min(now - second, Int64(buckets.count)) {
                buckets[Int((second + step) % Int64(buckets.count))] = 0
            }
        }
        if second.map({ now > $0 }) ?? true { second = now }
    }

    /// Whole seconds since a fixed instant of this process.
    private static func epochSecond(_ instant: ContinuousClock.Instant) -> Int64 {
        let elapsed = origin.duration(to: instant)
        return max(0, elapsed.components.seconds)
    }

    private static let origin = ContinuousClock.now
}

/// The last samples of a duration (seconds), for percentiles: a ring of the newest 4,096.
struct LatencyWindow: Sendable {
    private var samples: [Double] = []
    private var next = 0
    private(set) var count = 0
    static let capacity = 4_096

    mutating func record(_ seconds: Double) {
        count += 1
        if samples.count < Self.capacity {
            samples.append(seconds)
        } else {
            samples[next] = seconds
            next = (next + 1) % Self.capacity
        }
    }

    struct Summary: Codable, Sendable {
        var count: Int
        var p50: Double?
        var p99: Double?
        var max: Double?
    }

    var summary: Summary {
        let sorted = samples.sorted()
        func at(_ q: Double) -> Double? {
            sorted.isEmpty ? nil : sorted[min(sorted.count - 1, Int((q * Double(sorted.count)).rounded(.up)) - 1)]
        }
        return Summary(count: count, p50: at(0.5), p99: at(0.99), max: sorted.last)
    }
}
