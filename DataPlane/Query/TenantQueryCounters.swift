import Metrics
import Synchronization

/// `zaas_tenant_queries_total{tenant, code}`: every query of a tenant by the status it was answered
/// with (429: refused by the rate limit), for the per-tenant alerts and dashboard
/// (infra/prometheus, infra/grafana). The label is the tenant's slug, never its id
/// (docs/security.md); the metrics listener is not public. Counters are made once per tenant and
/// status and kept.
final class TenantQueryCounters: Sendable {
    private struct Key: Hashable {
        let tenant: String
        let code: Int
    }

    private let counters = Mutex<[Key: Counter]>([:])

    func record(tenant slug: String, code: Int) {
        let key = Key(tenant: slug, code: code)
        let counter = self.counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "zaas_tenant_queries_total", dimensions: [("tenant", slug), ("code", String(code))])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }
}
