import Foundation
import Shared
import Testing

@testable import DataPlane

/// The node's side of the large-local class without a sidecar: holds on the circuit, the reading
/// of a sidecar's metrics, the plan's fallback order.
@Suite("large-local backends: busy and held circuits, the sidecar's metrics, the fallback order")
struct AirLLMBackendTests {
    @Test("a busy backend is skipped until its Retry-After passes; a held one until released; neither is a failure")
    func holds() throws {
        let breaker = CircuitBreaker(failureThreshold: 2)
        let start = ContinuousClock.now
        func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }
        breaker.busy(until: at(1000))
        #expect(breaker.unavailability(at: at(500)) == "backend_busy")
        #expect(breaker.acquire(at: at(500)) == nil)
        // An earlier Retry-After does not shorten a later one.
        breaker.busy(until: at(200))
        #expect(breaker.unavailability(at: at(900)) == "backend_busy")
        #expect(breaker.unavailability(at: at(1000)) == nil && breaker.state(at: at(1000)) == .closed)
        let permit = try #require(breaker.acquire(at: at(1000)))
        breaker.record(.success, permit: permit, at: at(1000))

        breaker.hold("memory_ceiling")
        #expect(breaker.heldReason == "memory_ceiling")
        #expect(breaker.unavailability(at: at(2000)) == "memory_ceiling" && breaker.acquire(at: at(2000)) == nil)
        breaker.hold(nil)
        #expect(breaker.isAvailable(at: at(2000)) && breaker.state(at: at(2000)) == .closed)
        // Failures still open it as before; a held reason is named before the open circuit.
        for _ in 0..<2 { breaker.record(.failure, permit: try #require(breaker.acquire(at: at(3000))), at: at(3000)) }
        #expect(breaker.unavailability(at: at(3001)) == "circuit_open")
        breaker.hold("backend_unreachable")
        #expect(breaker.unavailability(at: at(3001)) == "backend_unreachable")
    }

    @Test("the sidecar's metrics: memory, its limit and the model's state decide the hold")
    func reading() {
        let text = """
            # HELP airllm_process_resident_bytes Resident memory of the sidecar process.
            # TYPE airllm_process_resident_bytes gauge
            airllm_process_resident_bytes 8.38455296e+08
            airllm_process_peak_resident_bytes 9.0e+08
            airllm_memory_limit_bytes 2.0e+09
            airllm_device_memory_bytes{device="cuda:0"} 1000
            airllm_device_memory_bytes{device="cuda:1"} 500
            airllm_model_loaded 1.0
            airllm_requests_queued 2.0
            airllm_layer_load_seconds_count{layer="model.layers.0"} 124.0
            """
        let reading = BackendMonitor.Reading(prometheus: text)
        #expect(reading.loaded && reading.resident == 838_455_296 && reading.peak == 900_000_000)
        #expect(reading.limit == 2_000_000_000 && reading.device == 1500 && reading.queued == 2)
        #expect(reading.hold == nil)
        #expect(BackendMonitor.verdict(reading) == nil && BackendMonitor.verdict(nil) == "backend_unreachable")
        let over = BackendMonitor.Reading(
            prometheus: text.replacingOccurrences(
                of: "airllm_memory_limit_bytes 2.0e+09", with: "airllm_memory_limit_bytes 1e6"))
        #expect(over.hold == "memory_ceiling")
        let loading = BackendMonitor.Reading(
            prometheus: text.replacingOccurrences(of: "airllm_model_loaded 1.0", with: "airllm_model_loaded 0.0"))
        #expect(loading.hold == "backend_unhealthy")
        #expect(BackendMonitor.Reading(prometheus: "not prometheus at all").hold == "backend_unhealthy")
        #expect(BackendMonitor.metricsURL("http://127.0.0.1:8095/v1") == "http://127.0.0.1:8095/metrics")
        #expect(BackendMonitor.metricsURL("https://airllm.internal/api/v1?x=1") == "https://airllm.internal/metrics")
        #expect(BackendMonitor.metricsURL("not a url") == nil)
    }

    @Test("each class falls back in its own order: large-local to the small local model before any cloud")
    func fallbacks() {
        #expect(ModelClass.largeLocal.fallbacks == [.largeLocal, .local, .cloud])
        #expect(ModelClass.cloud.fallbacks == [.cloud, .largeLocal, .local])
        #expect(ModelClass.local.fallbacks == [.local, .cloud, .largeLocal])
        for modelClass in ModelClass.allCases {
            #expect(Set(modelClass.fallbacks) == Set(ModelClass.allCases) && modelClass.fallbacks.first == modelClass)
        }
        #expect(ModelClasses(names: ["large-local"]) == .largeLocal)
        #expect(ModelClasses.largeLocal.names == ["large-local"])
    }
}
