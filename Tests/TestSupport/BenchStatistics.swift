import Foundation

// What the benchmarks report with: percentiles of samples, durations in milliseconds.

/// The `p`th percentile (0–100) of `values` by the nearest-rank method; NaN when empty.
public func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
    return sorted[max(0, index)]
}

public func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

public func format(_ value: Double, _ unit: String = "ms") -> String { String(format: "%.3f %@", value, unit) }
