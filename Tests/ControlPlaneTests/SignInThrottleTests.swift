import Foundation
import HTTPTypes
import Shared
import Testing

@testable import ControlPlane

@Suite("sign-in throttling and the hashing gate")
struct SignInThrottleTests {
    static func slug(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let problem as Problem {
            return problem.slug
        } catch {
            return "\(error)"
        }
    }

    @Test("the address is throttled first; the account only when many addresses fail on it; both forgive over time")
    func buckets() async throws {
        let throttle = SignInThrottle(
            limits: .init(addressFailures: 3, accountFailures: 5, forgiveEvery: .milliseconds(300)))
        for _ in 0..<3 { throttle.recordFailure(address: "a", email: "x@e.example") }
        #expect(Self.slug { try throttle.check(address: "a", email: "y@e.example") } == "sign-in-throttled")
        // Another address may still try the same account.
        #expect(Self.slug { try throttle.check(address: "b", email: "x@e.example") } == nil)
        for address in ["b", "c"] { throttle.recordFailure(address: address, email: "x@e.example") }
        // Five failures on the account from three addresses: the account waits, from anywhere.
        #expect(Self.slug { try throttle.check(address: "d", email: "x@e.example") } == "sign-in-throttled")
        #expect(Self.slug { try throttle.check(address: "d", email: "z@e.example") } == nil)
        // A failure is forgiven every 300 ms: soon both may try again.
        try await Task.sleep(for: .milliseconds(700))
        #expect(Self.slug { try throttle.check(address: "a", email: "x@e.example") } == nil)
        // Retry-After says when.
        for _ in 0..<3 { throttle.recordFailure(address: "e", email: "w@e.example") }
        do {
            try throttle.check(address: "e", email: "w@e.example")
            Issue.record("not throttled")
        } catch let problem as Problem {
            #expect(problem.status == .tooManyRequests)
            #expect(problem.headers[.retryAfter] == "1")
        }
    }

    @Test("memory stays bounded: past the cap, old entries go")
    func bounded() {
        let throttle = SignInThrottle(limits: .init(maximumEntries: 100))
        for index in 0..<1000 {
            throttle.recordFailure(address: "10.0.\(index / 256).\(index % 256)", email: "a@b.example")
        }
        #expect(throttle.entryCount <= 100)
    }

    @Test("the hashing gate runs at most its permits at once and refuses callers past the queue with 503")
    func gate() async throws {
        let gate = HashingGate(permits: 1, maximumWaiting: 1)
        let started = ManagedCounter()
        let results = await withTaskGroup(of: String.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do {
                        try await gate.run {
                            started.increment()
                            try await Task.sleep(for: .milliseconds(300))
                        }
                        return "ran"
                    } catch let problem as Problem {
                        return problem.slug
                    } catch {
                        return "\(error)"
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.sorted() == ["ran", "ran", "sign-in-busy"], "\(results)")
        #expect(started.value == 2)
        #expect(try await gate.run { 42 } == 42)
    }
}

final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}
