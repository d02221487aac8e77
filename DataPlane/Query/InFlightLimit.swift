import HTTPTypes
import Metrics
import Shared
import Synchronization

/// Bounds the queries a node works on at once. Past the bound a query is refused at once with
/// 503 `overloaded` and `Retry-After: 1`, so a burst beyond what the node can serve costs the
/// callers a retry elsewhere, not unbounded queues, memory and latency for everyone.
final class InFlightLimit: Sendable {
    let maximum: Int
    private let current = Atomic<Int>(0)
    private let shed = Counter(label: "zaas_queries_shed_total")

    init(maximum: Int) {
        self.maximum = maximum
    }

    var count: Int { self.current.load(ordering: .relaxed) }

    func enter() throws {
        let now = self.current.wrappingAdd(1, ordering: .relaxed).newValue
        guard now <= self.maximum else {
            self.current.wrappingSubtract(1, ordering: .relaxed)
            self.shed.increment()
            throw Problem.overloaded
        }
    }

    func leave() {
        self.current.wrappingSubtract(1, ordering: .relaxed)
    }

    /// A place taken for work that outlives its handler (a streamed answer), given back when the
    /// last reference to it goes, whether or not the work ever ran.
    final class Place: Sendable {
        private let limit: InFlightLimit

        init(_ limit: InFlightLimit) throws {
            try limit.enter()
            self.limit = limit
        }

        deinit { self.limit.leave() }
    }
}

extension Problem {
    /// The node is past what it can serve in time (queries in flight, the embedder's queue).
    static var overloaded: Problem {
        Problem(
            slug: "overloaded", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "This node is serving as many queries as it can. Retry shortly (another node may answer).",
            headers: [.retryAfter: "1"])
    }
}
