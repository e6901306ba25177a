extension Duration {
    /// The duration as fractional seconds, for JSON figures and arithmetic with rates.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
