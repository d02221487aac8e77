import Foundation

// What the benchmarks measure and report with: a closed loop of callers, percentiles of samples,
// durations in milliseconds.

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

/// `clients` callers sending requests back to back for `seconds`; each request's latency and the
/// count of requests `request` judged failed (it returns false).
public func closedLoop(clients: Int, seconds: Int, _ request: @escaping @Sendable (Int) async throws -> Bool)
    async throws
    -> (times: [Double], failures: Int, elapsed: Double)
{
    let deadline = ContinuousClock.now + .seconds(seconds)
    let start = ContinuousClock.now
    let (times, failures) = try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
        for client in 0..<clients {
            group.addTask {
                var times: [Double] = []
                var failures = 0
                var next = client
                while ContinuousClock.now < deadline {
                    let begin = ContinuousClock.now
                    let succeeded = try await request(next)
                    times.append(milliseconds(ContinuousClock.now - begin))
                    if !succeeded { failures += 1 }
                    next += 1
                }
                return (times, failures)
            }
        }
        return try await group.reduce(into: ([Double](), 0)) {
            $0.0 += $1.0; $0.1 += $1.1
        }
    }
    return (times, failures, milliseconds(ContinuousClock.now - start) / 1000)
}
