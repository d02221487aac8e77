extension Duration {
    /// The duration in milliseconds, fractions kept (latencies in health documents and logs).
    public var milliseconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
