/// The cost of one lock-step step on a rank, in token-equivalents: tokens through the model's weights plus attended
/// (query, key) pairs, a pair costing 1/14,800 of a token (DeepSeek-V3: ~74 GFLOP of weights per token against
/// ~5 MFLOP per attended pair).
public enum StepCost {
    public static let pairsPerToken = 14_800.0

    /// Pairs attended by new tokens `[from, to)` of a request with `cached` tokens already in KV cache: new token i
    /// attends to the cache and to itself and the new tokens before it, c + i + 1 keys.
    public static func pairs(cached: Int, from: Int, to: Int) -> Double {
        let (c, a, b) = (Double(cached), Double(from), Double(to))
        return (b - a) * c + (b * (b + 1) - a * (a + 1)) / 2
    }

    /// Core-attention work of a whole prompt, DOMAIN §2.1: A = n·c + n(n+1)/2.
    public static func attentionWork(cached: Int, newTokens: Int) -> Double {
        pairs(cached: cached, from: 0, to: newTokens)
    }

    /// A decode step: every running request makes one token and attends its whole context.
    public static func decodeStep(runningRequests: Double, kvTokens: Double) -> Double {
        runningRequests + kvTokens / pairsPerToken
    }
}
