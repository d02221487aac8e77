import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Shared

/// Watches the large-local backends (the AirLLM sidecar, docs/airllm.md) between calls: every
/// `interval` it reads each one's `/metrics` at the origin of its base URL and holds its circuit
/// open while the sidecar is unreachable, has no model loaded, or uses more resident memory than
/// the limit it reports itself (`airllm_memory_limit_bytes`). The figures become this node's
/// gauges, so the monitoring can alert on them: `zaas_model_backend_memory_bytes{model, kind}`
/// (`resident`, `peak`, `limit`, `device`), `zaas_model_backend_queued{model}` and
/// `zaas_model_backend_up{model}`; and, for backends of every class, `zaas_model_circuit_open`.
struct BackendMonitor: Sendable {
    /// What one scrape found.
    struct Reading: Sendable, Equatable {
        var loaded: Bool
        var resident: Double?
        var peak: Double?
        var limit: Double?
        var device: Double?
        var queued: Double?

        /// The hold it calls for: nil when the backend may be called.
        var hold: String? {
            guard self.loaded else { return "backend_unhealthy" }
            if let resident, let limit, limit > 0, resident > limit { return "memory_ceiling" }
            return nil
        }

        /// Reads the sidecar's Prometheus text (samples of other names are ignored).
        init(prometheus text: String) {
            var values: [String: Double] = [:]
            var device = 0.0
            var sawDevice = false
            for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                    continue
                }
                let series = line[..<space]
                let name = series.prefix { $0 != "{" && $0 != " " }
                if name == "airllm_device_memory_bytes" {
                    device += value
                    sawDevice = true
                } else {
                    values[String(name)] = value
                }
            }
            self.loaded = values["airllm_model_loaded"] == 1
            self.resident = values["airllm_process_resident_bytes"]
            self.peak = values["airllm_process_peak_resident_bytes"]
            self.limit = values["airllm_memory_limit_bytes"]
            self.device = sawDevice ? device : nil
            self.queued = values["airllm_requests_queued"]
        }
    }

    let http: HTTPClient
    let backends: ModelBackends
    let catalog: @Sendable () -> [ModelBackend]
    let interval: Duration
    let logger: Logger

    /// Scrapes until cancelled, and records which backends nodes skip now.
    func run() async {
        while !Task.isCancelled {
            await self.checkAll()
            self.recordCircuits()
            try? await Task.sleep(for: self.interval)
        }
    }

    /// `zaas_model_circuit_open{model}`: 1 while a backend of any class may not be called (its
    /// circuit open after failures, busy, or held by this monitor), else 0.
    func recordCircuits(at now: ContinuousClock.Instant = .now) {
        for runtime in self.backends.enabled(catalog: self.catalog()) {
            Gauge(label: "zaas_model_circuit_open", dimensions: [("model", runtime.backend.name)])
                .record(runtime.breaker.isAvailable(at: now) ? 0 : 1)
        }
    }

    /// One round over every enabled large-local backend.
    func checkAll() async {
        let runtimes = self.backends.enabled(catalog: self.catalog()).filter { $0.backend.modelClass == .largeLocal }
        await withTaskGroup(of: Void.self) { group in
            for runtime in runtimes {
                group.addTask { await self.check(runtime) }
            }
        }
    }

    func check(_ runtime: ModelBackends.Runtime) async {
        let name = runtime.backend.name
        let hold: String?
        var reading: Reading?
        var problem = ""
        if let url = Self.metricsURL(runtime.backend.baseURL) {
            do {
                var request = HTTPClientRequest(url: url)
                request.headers.add(name: "Accept", value: "text/plain")
                let response = try await self.http.execute(request, timeout: .seconds(2))
                let body = try await response.body.collect(upTo: 1 << 20)
                if response.status == .ok {
                    reading = Reading(prometheus: String(buffer: body))
                } else {
                    problem = "status \(response.status.code)"
                }
            } catch {
                problem = "\(error)"
            }
            hold = Self.verdict(reading)
        } else {
            hold = "backend_unreachable"
            problem = "no origin in the base URL"
        }
        let before = runtime.breaker.heldReason
        runtime.breaker.hold(hold)
        if before != hold {
            self.logger.notice(
                hold == nil ? "model backend available again" : "model backend held open",
                metadata: ["model": "\(name)", "reason": "\(hold ?? before ?? "")", "error": "\(problem)"])
        }
        Gauge(label: "zaas_model_backend_up", dimensions: [("model", name)]).record(reading == nil ? 0 : 1)
        guard let reading else { return }
        for (kind, value) in [
            ("resident", reading.resident), ("peak", reading.peak), ("limit", reading.limit),
            ("device", reading.device),
        ] {
            if let value {
                Gauge(label: "zaas_model_backend_memory_bytes", dimensions: [("model", name), ("kind", kind)])
                    .record(value)
            }
        }
        if let queued = reading.queued {
            Gauge(label: "zaas_model_backend_queued", dimensions: [("model", name)]).record(queued)
        }
    }

    /// The hold a scrape calls for: the reading's, or `backend_unreachable` when there was none.
    /// (Not `reading?.hold ?? …`, which would hold a healthy backend: its nil hold reads as no reading.)
    static func verdict(_ reading: Reading?) -> String? {
        guard let reading else { return "backend_unreachable" }
        return reading.hold
    }

    /// `{scheme}://{host}[:port]/metrics` of a base URL such as `http://127.0.0.1:8095/v1`.
    static func metricsURL(_ baseURL: String) -> String? {
        guard var parts = URLComponents(string: baseURL), parts.scheme != nil, parts.host != nil else { return nil }
        parts.path = "/metrics"
        parts.query = nil
        parts.fragment = nil
        return parts.string
    }
}
