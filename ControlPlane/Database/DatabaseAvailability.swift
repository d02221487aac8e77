import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import Shared
import Synchronization
import _ConnectionPoolModule

/// Whether PostgreSQL answers, checked once a second on a pool of one connection of its own (not
/// the requests' pool, so a pool busy with slow requests is not taken for an outage).
///
/// While PostgreSQL is down the pool keeps new requests waiting for a connection for up to a
/// minute before failing; with this, the control plane answers them at once with 503
/// `database-unavailable` and `Retry-After` instead (`DatabaseAvailabilityMiddleware`).
///
/// One slow or failed probe is not an outage: a machine busy enough to delay a connection by a
/// couple of seconds would otherwise refuse every admin call meanwhile. Nor is a stall of this
/// process: a probe that began before its threads were held up for longer than `outageAfter`
/// times out when they run again, yet says nothing about PostgreSQL, and a wait whose own timer
/// ran late (`verdict`) is not counted at all. PostgreSQL counts as
/// unreachable once every probe has failed for `outageAfter` and at least `outageFailures` probes
/// in a row have failed; one success ends it.
final class DatabaseProbe: Service, Sendable {
    let client: PostgresClient
    let interval: Duration
    let timeout: Duration
    let outageAfter: Duration
    let outageFailures: Int
    /// How late the probe's own timer may run before a silent attempt proves nothing (`verdict`).
    let stallTolerance: Duration
    let logger: Logger
    private let state = Mutex<State>(State())

    private struct State {
        var reachable = true
        /// When the first probe of the current run of failures began (nil after a success).
        var failingSince: ContinuousClock.Instant?
        /// Probes failed in a row.
        var failures = 0
    }

    init(
        configuration: PostgresClient.Configuration, interval: Duration = .seconds(1),
        timeout: Duration = .seconds(2), outageAfter: Duration = .seconds(8), outageFailures: Int = 3,
        stallTolerance: Duration = .seconds(1), logger: Logger
    ) {
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.interval = interval
        self.timeout = timeout
        self.outageAfter = outageAfter
        self.outageFailures = outageFailures
        self.stallTolerance = stallTolerance
        self.logger = logger
    }

    /// The verdict: false once probes have failed for `outageAfter` (and `outageFailures` in a
    /// row), true again after one success.
    var isReachable: Bool { self.state.withLock { $0.reachable } }

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            try? await cancelWhenGracefulShutdown {
                // One attempt at a time, never awaited past the timeout: a lease or connect that
                // does not notice cancellation must not hold the verdict (it stays "unreachable"
                // until that attempt ends and a later one succeeds).
                var attempt: (task: Task<Bool, Never>, started: ContinuousClock.Instant)?
                while !Task.isCancelled {
                    // An attempt unanswered for as long as an outage takes is given up: it may
                    // never end (see `withOpenConnection`), and the verdict must still come back.
                    if let pending = attempt, .now - pending.started >= self.outageAfter {
                        pending.task.cancel()
                        attempt = nil
                    }
                    if attempt == nil {
                        let (client, logger) = (self.client, self.logger)
                        attempt = (Task { (try? await client.queryRows("SELECT 1", logger: logger)) != nil }, .now)
                    }
                    let started = attempt!.started
                    let waitStarted = ContinuousClock.now
                    let reachable = await result(of: attempt!.task, within: self.timeout)
                    if reachable != nil { attempt = nil }
                    if let succeeded = self.verdict(reachable, waited: .now - waitStarted) {
                        self.record(succeeded: succeeded, attemptStarted: started, now: .now)
                    } else {
                        self.logger.debug("database probe inconclusive: this process was held up")
                    }
                    try await Task.sleep(for: self.interval)
                }
                attempt?.task.cancel()
            }
            group.cancelAll()
        }
    }

    /// What one wait for an attempt says: true (answered), false (failed, or no answer within the
    /// timeout), or nil when the wait itself ended more than `stallTolerance` after the timeout.
    /// Then this process was held up (its threads busy with other work, its CPU quota spent), and
    /// the attempt may not have had a thread to take PostgreSQL's answer either: no evidence.
    func verdict(_ reachable: Bool?, waited: Duration) -> Bool? {
        if let reachable { return reachable }
        return waited > self.timeout + self.stallTolerance ? nil : false
    }

    /// Takes one probe's outcome (a failure includes an attempt still unanswered at its timeout).
    func record(succeeded: Bool, attemptStarted: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        let (changed, reachable) = self.state.withLock { state -> (Bool, Bool) in
            let before = state.reachable
            if succeeded {
                state = State()
            } else {
                let since = state.failingSince ?? attemptStarted
                state.failingSince = since
                state.failures += 1
                if now - since >= self.outageAfter && state.failures >= self.outageFailures { state.reachable = false }
            }
            return (before != state.reachable, state.reachable)
        }
        guard changed else { return }
        if reachable {
            self.logger.notice("PostgreSQL reachable again")
        } else {
            self.logger.error("PostgreSQL unreachable (no answer to the probe): answering 503 database-unavailable")
        }
    }
}

/// Answers 503 `database-unavailable` at once while the probe finds PostgreSQL down, rather than
/// holding the request until the pool gives up (a minute). A request already running when the
/// database goes away is cancelled as soon as the probe notices (its transaction rolls back) and
/// answered the same way. Health and metrics are not behind it.
struct DatabaseAvailabilityMiddleware<Context: RequestContext>: RouterMiddleware {
    let probe: DatabaseProbe
    /// Requests that finish sooner are never watched.
    var watchAfter: Duration = .milliseconds(500)
    var pollInterval: Duration = .milliseconds(200)

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard self.probe.isReachable else { throw Problem.databaseUnavailable }
        // The task group ends both children before it returns, so `next` does not outlive this call.
        return try await withoutActuallyEscaping(next) { next in
            let handler = UncheckedSendable(next)
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { try await handler.value(request, context) }
                group.addTask {
                    try await Task.sleep(for: self.watchAfter)
                    while self.probe.isReachable { try await Task.sleep(for: self.pollInterval) }
                    return nil
                }
                defer { group.cancelAll() }
                // The handler's response, or nil from the watcher: the database went away meanwhile.
                let first: Response? = try await group.next() ?? nil
                guard let response = first else { throw Problem.databaseUnavailable }
                return response
            }
        }
    }
}

/// A value the compiler cannot prove safe to share, shared where the code above shows it is.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Problem {
    static var databaseUnavailable: Problem {
        Problem(
            slug: "database-unavailable", title: "Service Unavailable", status: .serviceUnavailable,
            detail: "The control plane's database cannot be reached; nothing was changed. Try again shortly.",
            headers: [.retryAfter: "5"])
    }

    /// Errors that mean the database could not be reached or went away mid-request: retrying
    /// later may succeed, so the caller sees 503, never a 500 with the driver's internals. A
    /// transaction that failed this way was rolled back by PostgreSQL.
    static func databaseUnavailability(_ error: any Error) -> Problem? {
        switch error {
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .poolClosed, .uncleanShutdown:
                return .databaseUnavailable
            case .server:
                // 08: connection exception; 57P01-57P03: shutting down, crashed, cannot connect now;
                // 53300: too many connections.
                guard let state = error.sqlState else { return nil }
                return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300"].contains(state)
                    ? .databaseUnavailable : nil
            default:
                return nil
            }
        case let error as PostgresTransactionError:
            for inner in [error.beginError, error.closureError, error.commitError, error.rollbackError] {
                if let inner, let problem = Self.databaseUnavailability(inner) { return problem }
            }
            return nil
        case let error as ConnectionPoolError where error == .connectionCreationCircuitBreakerTripped:
            return .databaseUnavailable
        case is DatabaseConnectionClosed:
            return .databaseUnavailable
        default:
            return nil
        }
    }
}
