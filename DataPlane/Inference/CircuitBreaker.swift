import Synchronization

/// One backend's circuit: whether calls to it are worth making.
///
/// - **Closed**: calls go through. `failureThreshold` consecutive failures (errors, timeouts,
///   5xx and 429 answers) open it.
/// - **Open**: calls are refused at once (the router skips the backend and falls back) for the
///   cool-down, which doubles on each failed probe up to `maximumCoolDown`.
/// - **Half-open**: after the cool-down one call at a time goes through as a probe; its success
///   closes the circuit, its failure opens it again.
///
/// A success while closed resets the count, so isolated failures never open it.
///
/// Two holds keep it open whatever calls did: a backend that answered 429 with `Retry-After` is
/// busy until then (`busy(until:)`), and a backend whose monitor finds it unreachable, unhealthy
/// or over its memory ceiling is held until the monitor releases it (`hold(_:)`).
final class CircuitBreaker: Sendable {
    enum State: Equatable, Sendable {
        case closed
        case open(until: ContinuousClock.Instant)
        case halfOpen
    }

    /// Leave to make one call; say how it went with `record`.
    struct Permit: Sendable {
        let isProbe: Bool
    }

    let failureThreshold: Int
    let coolDown: Duration
    let maximumCoolDown: Duration
    private let inner: Mutex<Internal>

    private struct Internal {
        var state: State = .closed
        var consecutiveFailures = 0
        var currentCoolDown: Duration
        var probeInFlight = false
        var busyUntil: ContinuousClock.Instant?
        var held: String?
    }

    init(failureThreshold: Int = 5, coolDown: Duration = .seconds(5), maximumCoolDown: Duration = .seconds(60)) {
        precondition(failureThreshold > 0)
        self.failureThreshold = failureThreshold
        self.coolDown = coolDown
        self.maximumCoolDown = maximumCoolDown
        self.inner = Mutex(Internal(currentCoolDown: coolDown))
    }

    /// The state at `now` (an open circuit whose cool-down has passed reads as half-open).
    func state(at now: ContinuousClock.Instant = .now) -> State {
        self.inner.withLock { inner in
            if case .open(let until) = inner.state, now >= until { return .halfOpen }
            return inner.state
        }
    }

    /// Whether the router should consider the backend at all (closed, or ready for a probe, and
    /// neither busy nor held).
    func isAvailable(at now: ContinuousClock.Instant = .now) -> Bool {
        self.unavailability(at: now) == nil
    }

    /// Why the router may not call the backend now (as `fallback_reason` says it): `backend_busy`,
    /// the monitor's reason, or `circuit_open`; nil when it may.
    func unavailability(at now: ContinuousClock.Instant = .now) -> String? {
        self.inner.withLock { inner in
            if let held = inner.held { return held }
            if let until = inner.busyUntil, now < until { return "backend_busy" }
            switch inner.state {
            case .closed: return nil
            case .halfOpen: return inner.probeInFlight ? "circuit_open" : nil
            case .open(let until): return now >= until && !inner.probeInFlight ? nil : "circuit_open"
            }
        }
    }

    /// The backend said it is busy (429 with `Retry-After`): no calls until `until`. Not a
    /// failure: a busy backend is healthy.
    func busy(until: ContinuousClock.Instant) {
        self.inner.withLock { inner in inner.busyUntil = max(inner.busyUntil ?? until, until) }
    }

    /// Held open for `reason` (the monitor's finding) until `hold(nil)` releases it.
    func hold(_ reason: String?) {
        self.inner.withLock { $0.held = reason }
    }

    /// The monitor's hold, if any.
    var heldReason: String? { self.inner.withLock { $0.held } }

    /// Leave for one call, or nil when the circuit is open (or a probe is already out), or the
    /// backend busy or held.
    func acquire(at now: ContinuousClock.Instant = .now) -> Permit? {
        self.inner.withLock { inner -> Permit? in
            if inner.held != nil { return nil }
            if let until = inner.busyUntil, now < until { return nil }
            switch inner.state {
            case .closed:
                return Permit(isProbe: false)
            case .open(let until):
                guard now >= until else { return nil }
                inner.state = .halfOpen
                inner.probeInFlight = true
                return Permit(isProbe: true)
            case .halfOpen:
                guard !inner.probeInFlight else { return nil }
                inner.probeInFlight = true
                return Permit(isProbe: true)
            }
        }
    }

    /// How the call went. A call that was cancelled by its client (not the backend's fault)
    /// should be recorded as `.abandoned`: it neither closes nor opens the circuit.
    func record(_ outcome: Outcome, permit: Permit, at now: ContinuousClock.Instant = .now) {
        self.inner.withLock { inner in
            if permit.isProbe { inner.probeInFlight = false }
            switch outcome {
            case .abandoned:
                return
            case .success:
                inner.consecutiveFailures = 0
                if permit.isProbe || inner.state == .halfOpen {
                    inner.state = .closed
                    inner.currentCoolDown = self.coolDown
                }
            case .failure:
                inner.consecutiveFailures += 1
                if permit.isProbe || inner.state == .halfOpen {
                    // The probe failed: open again, for longer.
                    inner.currentCoolDown = min(inner.currentCoolDown * 2, self.maximumCoolDown)
                    inner.state = .open(until: now + inner.currentCoolDown)
                } else if case .closed = inner.state, inner.consecutiveFailures >= self.failureThreshold {
                    inner.state = .open(until: now + inner.currentCoolDown)
                }
            }
        }
    }

    enum Outcome: Sendable {
        case success
        case failure
        case abandoned
    }
}
