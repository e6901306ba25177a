import Foundation

/// The draws the built-in workload models make, all from a `SeededGenerator`, so a seed fixes a whole workload.
extension SeededGenerator {
    /// Uniform in (0, 1): never 0, so `log` of it is finite.
    mutating func unit() -> Double {
        (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992
    }

    /// Standard normal (Box–Muller; one of the pair is dropped to keep the generator's state the only state).
    mutating func normal() -> Double {
        let u = unit()
        let v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }

    mutating func exponential(mean: Double) -> Double { -log(unit()) * mean }

    /// Gamma(shape, scale 1) by Marsaglia and Tsang; shapes below 1 boosted by U^(1/shape).
    mutating func gamma(shape: Double) -> Double {
        if shape < 1 { return gamma(shape: shape + 1) * pow(unit(), 1 / shape) }
        let d = shape - 1.0 / 3
        let c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0
            var v = 0.0
            repeat {
                x = normal()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = unit()
            if log(u) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }
}

/// Counter-based normals: the same (seed, keys...) always gives the same draws, with no state to carry, so a model's
/// parts can be built in any order.
enum KeyedNormal {
    /// `count` normals for one key: the same (seed, keys) always gives the same row, one hash for the whole row.
    static func row(_ seed: UInt64, _ keys: Int..., count: Int) -> [Double] {
        var state = seed
        for key in keys { state = mix(state ^ (UInt64(bitPattern: Int64(key)) &* 0x9E37_79B9_7F4A_7C15)) }
        var generator = SeededGenerator(seed: state)
        return (0..<count).map { _ in generator.normal() }
    }

    /// SplitMix64's finaliser.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
