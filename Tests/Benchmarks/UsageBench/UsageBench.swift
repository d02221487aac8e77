import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Shared
import Synchronization
import TestSupport

// Usage metering (issue 17): a control plane and a node as processes (release). 1M query events of
// one tenant over the last 30 days are ingested through POST /internal/v1/audit (the rollups are
// kept in the same statement); then GET /api/v1/stats through the node and GET /admin/v1/usage at
// the control plane, sequentially, p50/p99; then 1 000 events/s for 20 s to another tenant while
// its stats are read every 250 ms: how far the figures trail what the control plane acknowledged.
// BENCH_USAGE_EVENTS (1000000) and BENCH_STATS_REQUESTS (200) size it. Figures go to
// docs/benchmarks.md.

@main
struct UsageBench {
    static func main() async throws {
        try await runUsageBenchmark()
    }
}

/// Counts shared between the sender and the reader of the lag measurement.
final class Progress: Sendable {
    let acknowledged = Mutex(0)
    let done = Mutex(false)
}

func runUsageBenchmark() async throws {
    let environment = ProcessInfo.processInfo.environment
    let total = Int(environment["BENCH_USAGE_EVENTS"] ?? "1000000") ?? 1_000_000
    let requests = Int(environment["BENCH_STATS_REQUESTS"] ?? "200") ?? 200
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores")
    try await BenchStack.with(nodeCount: 1) { stack in
        let node = TestEnvironment.shared.nodeToken(for: stack.nodes[0].name)
        let (tenantText, key) = try await stack.makeTenantKey(
            slug: "usage", tier: "enterprise", scopes: #"["query", "stats:read"]"#)
        let tenant = UUID(uuidString: tenantText)!
        let now = Date()
        let keys = (0..<10).map { _ in UUID() }

        // 1. A month of events.
        print("\n[ingest] \(total) events of one tenant over the last 30 days, batches of 2000, two senders")
        let clock = ContinuousClock()
        let start = clock.now
        let stored = try await withThrowingTaskGroup(of: Int.self) { group in
            for sender in 0..<2 {
                group.addTask {
                    var generator = SplitMix(seed: UInt64(sender + 1))
                    var stored = 0
                    for batch in stride(from: sender, to: (total + 1999) / 2000, by: 2) {
                        let count = min(2000, total - batch * 2000)
                        var body = [UInt8]()
                        for _ in 0..<count {
                            let age = Double(generator.next() % (30 * 86_400 - 3600)) + 3600
                            body += try UsageBench.event(
                                tenant: tenant, key: keys[Int(generator.next() % 10)],
                                at: now.addingTimeInterval(-age), roll: Int(generator.next() % 100))
                            body.append(0x0A)
                        }
                        stored += try await UsageBench.ship(body, to: stack.control.baseURL, token: node).stored
                    }
                    return stored
                }
            }
            return try await group.reduce(0, +)
        }
        let seconds = (clock.now - start) / .seconds(1)
        print(
            "  stored \(stored) in \(String(format: "%.1f", seconds)) s: \(Int(Double(stored) / seconds)) events/s, rollups included (the batches' encoding included)"
        )

        // 2. Stats over the month.
        let hour = (now.timeIntervalSince1970 / 3600).rounded(.down) * 3600
        let range =
            "from=\(Date(timeIntervalSince1970: hour - 30 * 86_400).formatted(.iso8601))&to=\(Date(timeIntervalSince1970: hour + 3600).formatted(.iso8601))"
        let ops = try await stack.signIn()
        let targets: [(String, String, String)] = [
            (
                "GET /api/v1/stats (node), last 30 days to the hour", stack.node.baseURL + "/api/v1/stats?\(range)",
                key
            ),
            (
                "GET /admin/v1/usage (control plane), last 30 days",
                stack.control.baseURL + "/admin/v1/usage?\(range)&tenant_id=\(tenantText)",
                ops
            ),
            ("GET /api/v1/stats (node), current month", stack.node.baseURL + "/api/v1/stats", key),
        ]
        print("\n[stats] \(requests) sequential requests each, after 20 warm-up")
        for (name, url, bearer) in targets {
            for _ in 0..<20 { _ = try await TestHTTP.send("GET", url, bearer: bearer) }
            var times: [Double] = []
            var queries = 0
            for _ in 0..<requests {
                let begin = clock.now
                let reply = try await TestHTTP.send("GET", url, bearer: bearer)
                times.append((clock.now - begin) / .milliseconds(1))
                guard reply.status == 200 else {
                    throw TestEnvironment.SetupError(message: "\(name): \(reply.text)")
                }
                queries = (reply.json?["totals"] as? [String: Any])?["queries"] as? Int ?? -1
            }
            times.sort()
            print(
                "  \(name): p50 \(String(format: "%.2f", times[times.count / 2])) ms, p99 \(String(format: "%.2f", times[min(times.count - 1, Int(Double(times.count) * 0.99))])) ms, max \(String(format: "%.2f", times.last!)) ms; totals.queries \(queries)"
            )
        }

        // 3. Rollup lag at 1 000 events/s.
        print(
            "\n[lag] 1000 events/s for 20 s (batches of 100, 10 a second) to a fresh tenant; its stats every 250 ms"
        )
        let (liveText, liveKey) = try await stack.makeTenantKey(
            slug: "live", tier: "enterprise", scopes: #"["query", "stats:read"]"#)
        let live = UUID(uuidString: liveText)!
        let liveRange =
            "from=\(Date(timeIntervalSince1970: hour - 3600).formatted(.iso8601))&to=\(Date(timeIntervalSince1970: hour + 3 * 3600).formatted(.iso8601))"
        // The node knows a key once its configuration arrives: wait for that before the load.
        _ = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
            try await TestHTTP.send("GET", stack.node.baseURL + "/api/v1/stats", bearer: liveKey).status == 200
        }
        let progress = Progress()
        let reader = Task { () -> [(acked: Int, seen: Int)] in
            var samples: [(acked: Int, seen: Int)] = []
            while !progress.done.withLock({ $0 }) {
                let acked = progress.acknowledged.withLock { $0 }
                let reply = try await TestHTTP.send(
                    "GET", stack.node.baseURL + "/api/v1/stats?\(liveRange)", bearer: liveKey)
                guard reply.status == 200, let seen = (reply.json?["totals"] as? [String: Any])?["queries"] as? Int
                else {
                    throw TestEnvironment.SetupError(message: "stats during the load: \(reply.status) \(reply.text)")
                }
                samples.append((acked, seen))
                try await Task.sleep(for: .milliseconds(250))
            }
            return samples
        }
        var generator = SplitMix(seed: 99)
        var batchTimes: [Double] = []
        let begin = clock.now
        for tick in 0..<200 {
            var body = [UInt8]()
            for _ in 0..<100 {
                body += try UsageBench.event(tenant: live, key: keys[0], at: Date(), roll: Int(generator.next() % 100))
                body.append(0x0A)
            }
            let sent = clock.now
            let reply = try await UsageBench.ship(body, to: stack.control.baseURL, token: node)
            batchTimes.append((clock.now - sent) / .milliseconds(1))
            progress.acknowledged.withLock { $0 += reply.stored }
            try await Task.sleep(until: begin + .milliseconds(100 * (tick + 1)), clock: clock)
        }
        progress.done.withLock { $0 = true }
        let samples = try await reader.value
        let behind = samples.map { max(0, $0.acked - $0.seen) }
        let final = try await TestHTTP.send("GET", stack.node.baseURL + "/api/v1/stats?\(liveRange)", bearer: liveKey)
        print(
            "  after the load: \((final.json?["totals"] as? [String: Any])?["queries"] ?? "?") in the figures; samples behind (acknowledged/seen): \(samples.filter { $0.acked > $0.seen }.map { "\($0.acked)/\($0.seen)" })"
        )
        let sortedBatches = batchTimes.sorted()
        print(
            "  \(progress.acknowledged.withLock { $0 }) events acknowledged; batch of 100 acknowledged in p50 \(String(format: "%.1f", sortedBatches[sortedBatches.count / 2])) ms, p99 \(String(format: "%.1f", sortedBatches[Int(Double(sortedBatches.count) * 0.99)])) ms"
        )
        print(
            "  \(samples.count) stats samples: events acknowledged before the read but not in its figures: max \(behind.max() ?? -1), every sample \(behind.allSatisfy { $0 == 0 } ? "0" : "not 0")"
        )
    }
}

extension UsageBench {
    /// One query event, its outcome drawn from a mix like production's.
    static func event(tenant: UUID, key: UUID, at time: Date, roll: Int) throws -> [UInt8] {
        let (outcome, status): (String, Int) =
            switch roll {
            case 0..<30: ("answered", 200)
            case 30..<70: ("cache_exact", 200)
            case 70..<80: ("cache_semantic", 200)
            case 80..<82: ("cache_persistent", 200)
            case 82..<90: ("refused", 429)
            case 90..<91: ("refused", 403)
            case 91..<95: ("invalid", 400)
            case 95..<97: ("failed", 503)
            default: ("abandoned", 200)
            }
        let model = [("cloud", "fake-cloud"), ("local", "llama-local"), ("extractive", "zora-extractive-local")][
            roll % 3]
        let computed = outcome == "answered" || outcome == "abandoned"
        let event = AuditEvent(
            id: UUID.timeOrdered(at: time), time: time, kind: .query, tenantID: tenant, keyID: key, queryID: UUID(),
            node: "node-1", outcome: outcome, status: status,
            question: .init(
                text: "What does Noether's theorem state?", redacted: true,
                fingerprint: String(repeating: "ab", count: 32)),
            answer: status == 200
                ? .init(
                    text: "An answer of some length.", citations: [], confidence: 0.8, modelUsed: model.1,
                    canonVersion: "base-v1", route: .init(modelClass: model.0, complexity: 0.4, reason: "bench"))
                : nil,
            inputTokens: computed && model.0 != "extractive" ? 400 : nil,
            outputTokens: computed && model.0 != "extractive" ? 80 : nil,
            costNanoDollars: computed && model.0 == "cloud" ? 560_000 : nil,
            timingsMs: ["total": Double(roll * 7 % 400) + 0.5])
        return Array(try AuditEvent.encoder.encode(event))
    }

    static func ship(_ body: [UInt8], to base: String, token: String) async throws -> (stored: Int, duplicates: Int) {
        var request = HTTPClientRequest(url: base + InternalAPI.audit)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        let reply = try await response.body.collect(upTo: 1 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(reply.readableBytesView)) as? [String: Any]
        guard response.status == .ok, let stored = json?["stored"] as? Int else {
            throw TestEnvironment.SetupError(message: "ingest: \(response.status) \(String(buffer: reply))")
        }
        return (stored, json?["duplicates"] as? Int ?? 0)
    }
}
