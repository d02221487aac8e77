import Shared
import Synchronization
import Testing

@Suite("single flight")
struct SingleFlightTests {
    @Test("concurrent identical work runs once; every caller gets its result; errors reach every caller")
    func singleFlight() async throws {
        let flights = SingleFlight<Int>()
        final class Runs: Sendable {
            private let count = Atomic<Int>(0)
            @discardableResult func add() -> Int { self.count.add(1, ordering: .relaxed).newValue }
            var value: Int { self.count.load(ordering: .relaxed) }
        }
        let runs = Runs()
        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let (value, shared) = try await flights.run("k") {
                        runs.add()
                        try await Task.sleep(for: .milliseconds(200))
                        return 42
                    }
                    return (value, shared)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(runs.value == 1)
        #expect(results.allSatisfy { $0.0 == 42 })
        #expect(results.filter { !$0.1 }.count == 1)
        #expect(flights.count == 0)
        // Once done, the next call runs again; another key runs on its own.
        _ = try await flights.run("k") { runs.add() }
        #expect(runs.value == 2)

        struct Failure: Error {}
        await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    await #expect(throws: Failure.self) {
                        try await flights.run("bad") {
                            try await Task.sleep(for: .milliseconds(100))
                            throw Failure()
                        }
                    }
                }
            }
        }
    }
}
