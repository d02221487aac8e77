import Foundation
import Shared
import Synchronization

/// This node's working state for each backend of the catalog: its circuit and its concurrency
/// gate. The catalog itself comes with the configuration; an entry keeps its circuit across
/// config updates (by id) and gets a new gate only when its concurrency changes.
final class ModelBackends: Sendable {
    struct Runtime: Sendable {
        let backend: ModelBackend
        let breaker: CircuitBreaker
        let gate: ConcurrencyGate
    }

    /// How long a call waits for a free slot before the router falls back.
    let maximumWait: Duration
    private let runtimes = Mutex<[UUID: Runtime]>([:])

    init(maximumWait: Duration) {
        self.maximumWait = maximumWait
    }

    /// The enabled backends of `modelClass` whose circuit lets a call through, cheapest first.
    func candidates(_ modelClass: ModelClass, catalog: [ModelBackend]) -> [Runtime] {
        let now = ContinuousClock.now
        return self.runtimes(for: catalog)
            .filter { $0.backend.enabled && $0.backend.modelClass == modelClass && $0.breaker.isAvailable(at: now) }
            .sorted { Self.price($0.backend) < Self.price($1.backend) }
    }

    /// Why no backend of the class can be called now: the first enabled one's reason
    /// (`backend_busy`, a monitor's finding such as `memory_ceiling`, or `circuit_open`).
    func unavailability(_ modelClass: ModelClass, catalog: [ModelBackend]) -> String {
        let now = ContinuousClock.now
        return self.runtimes(for: catalog)
            .filter { $0.backend.enabled && $0.backend.modelClass == modelClass }
            .sorted { Self.price($0.backend) < Self.price($1.backend) }
            .lazy.compactMap { $0.breaker.unavailability(at: now) }.first ?? "circuit_open"
    }

    /// The runtimes of the catalog's enabled backends (for the monitor).
    func enabled(catalog: [ModelBackend]) -> [Runtime] {
        self.runtimes(for: catalog).filter(\.backend.enabled)
    }

    /// Whether any enabled backend of the class is in the catalog at all (healthy or not).
    func hasBackend(_ modelClass: ModelClass, catalog: [ModelBackend]) -> Bool {
        catalog.contains { $0.enabled && $0.modelClass == modelClass }
    }

    /// Price order: input plus output per 1 000 tokens, then the name (a stable order).
    private static func price(_ backend: ModelBackend) -> (UInt64, String) {
        (backend.inputNanoDollarsPer1K + backend.outputNanoDollarsPer1K, backend.name)
    }

    private func runtimes(for catalog: [ModelBackend]) -> [Runtime] {
        self.runtimes.withLock { runtimes in
            var current: [UUID: Runtime] = [:]
            current.reserveCapacity(catalog.count)
            for backend in catalog {
                if let held = runtimes[backend.id] {
                    let gate =
                        held.backend.maxConcurrency == backend.maxConcurrency
                        ? held.gate : ConcurrencyGate(limit: Int(backend.maxConcurrency), maximumWait: self.maximumWait)
                    current[backend.id] = Runtime(backend: backend, breaker: held.breaker, gate: gate)
                } else {
                    current[backend.id] = Runtime(
                        backend: backend, breaker: CircuitBreaker(),
                        gate: ConcurrencyGate(limit: Int(backend.maxConcurrency), maximumWait: self.maximumWait))
                }
            }
            runtimes = current
            return catalog.compactMap { current[$0.id] }
        }
    }
}
