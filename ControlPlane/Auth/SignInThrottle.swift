import Foundation
import HTTPTypes
import Shared
import Synchronization

/// Slows password guessing down before it costs an Argon2 verification: failed sign-ins spend
/// from a bucket per client address and a bucket per account email; an empty bucket answers
/// 429 with `Retry-After` until a failure has been forgiven.
///
/// The address is throttled first and hardest (5 failures, then one try a minute), so one
/// source guessing at a known email is stopped long before the account is; the account's bucket
/// is larger (20) and only fills when many addresses fail on it together. Either way the wait is
/// at most a few minutes, never an indefinite lock. Kept in the control plane's memory: each
/// instance throttles what it sees (the database's account lock is the shared backstop).
final class SignInThrottle: Sendable {
    struct Limits: Sendable {
        var addressFailures = 5
        var accountFailures = 20
        /// One failure is forgiven this often.
        var forgiveEvery: Duration = .seconds(60)
        /// At most this many addresses and accounts are remembered; beyond it the oldest go.
        var maximumEntries = 100_000
    }

    private struct Bucket {
        /// Failures still allowed, as of `updated`.
        var allowance: Double
        var updated: ContinuousClock.Instant
    }

    private let limits: Limits
    private let buckets = Mutex<[String: Bucket]>([:])

    init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Throws `Problem.signInThrottled` when the address or the account has no failure left.
    func check(address: String, email: String) throws {
        let now = ContinuousClock.now
        let wait = self.buckets.withLock { buckets -> Duration? in
            var longest: Duration?
            for (key, capacity) in self.buckets(address: address, email: email) {
                guard let bucket = buckets[key] else { continue }
                let allowance = self.refilled(bucket, capacity: capacity, now: now)
                if allowance < 1 {
                    let missing = self.limits.forgiveEvery * (1 - allowance)
                    longest = max(longest ?? .zero, missing)
                }
            }
            return longest
        }
        if let wait { throw Problem.signInThrottled(retryAfter: wait) }
    }

    /// Spends one failure from the address's and the account's buckets.
    func recordFailure(address: String, email: String) {
        let now = ContinuousClock.now
        self.buckets.withLock { buckets in
            for (key, capacity) in self.buckets(address: address, email: email) {
                let allowance = buckets[key].map { self.refilled($0, capacity: capacity, now: now) } ?? Double(capacity)
                buckets[key] = Bucket(allowance: max(0, allowance - 1), updated: now)
            }
            if buckets.count > self.limits.maximumEntries { self.evict(&buckets, now: now) }
        }
    }

    /// Addresses and accounts remembered now.
    var entryCount: Int { self.buckets.withLock { $0.count } }

    /// Forgets the account's failures after a successful sign-in (the address's stay).
    func recordSuccess(email: String) {
        _ = self.buckets.withLock { $0.removeValue(forKey: "e:" + email) }
    }

    /// The address's and the account's bucket names, with their capacities.
    private func buckets(address: String, email: String) -> [(key: String, capacity: Int)] {
        [("a:" + address, self.limits.addressFailures), ("e:" + email, self.limits.accountFailures)]
    }

    private func refilled(_ bucket: Bucket, capacity: Int, now: ContinuousClock.Instant) -> Double {
        let elapsed = bucket.updated.duration(to: now) / self.limits.forgiveEvery
        return min(Double(capacity), bucket.allowance + elapsed)
    }

    /// Drops buckets that are full again, then the least recently updated half if still too many.
    private func evict(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        let full = max(self.limits.addressFailures, self.limits.accountFailures)
        buckets = buckets.filter { $0.value.updated.duration(to: now) / self.limits.forgiveEvery < Double(full) }
        if buckets.count > self.limits.maximumEntries {
            let kept = buckets.sorted { $0.value.updated > $1.value.updated }.prefix(self.limits.maximumEntries / 2)
            buckets = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
    }
}

/// Runs Argon2 work (hashing, verification) at most `permits` at a time, with at most
/// `maximumWaiting` callers queued; past that the caller is refused at once (503 with
/// `Retry-After`) instead of piling up memory and latency behind a flood of sign-ins.
actor HashingGate {
    private let permits: Int
    private let maximumWaiting: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(permits: Int = max(1, ProcessInfo.processInfo.activeProcessorCount), maximumWaiting: Int = 64) {
        self.permits = permits
        self.maximumWaiting = maximumWaiting
    }

    func run<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        if self.running < self.permits {
            self.running += 1
        } else {
            guard self.waiting.count < self.maximumWaiting else { throw Problem.signInBusy }
            // The permit is handed over by `release` (running stays the same).
            await withCheckedContinuation { self.waiting.append($0) }
        }
        defer { self.release() }
        return try await body()
    }

    private func release() {
        if self.waiting.isEmpty {
            self.running -= 1
        } else {
            self.waiting.removeFirst().resume()
        }
    }
}

/// Argon2id behind the `HashingGate`: every hash and verification of the control plane.
struct GatedHasher: Sendable {
    let hasher: Argon2id
    let gate: HashingGate

    func hash(_ password: String) async throws -> String {
        try await self.gate.run { try await self.hasher.hash(password) }
    }

    func verify(_ password: String, against phc: String) async throws -> Bool {
        try await self.gate.run { try await self.hasher.verify(password, against: phc) }
    }
}

extension Problem {
    static func signInThrottled(retryAfter: Duration) -> Problem {
        let seconds = max(1, Int(retryAfter.components.seconds) + (retryAfter.components.attoseconds > 0 ? 1 : 0))
        return Problem(
            slug: "sign-in-throttled", title: "Too Many Requests", status: .tooManyRequests,
            detail: "Too many failed sign-ins from this address or for this account. Try again in \(seconds) s.",
            headers: [.retryAfter: String(seconds)])
    }

    static var signInBusy: Problem {
        Problem(
            slug: "sign-in-busy", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "Too many sign-ins are being checked at once. Try again in a moment.",
            headers: [.retryAfter: "1"])
    }
}
