import AsyncHTTPClient
import Canon
import DataPlane
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Shared
import Synchronization
import TestSupport

// Rate limiting and caching (issue 7): the limiter's step against the local Redis; semantic
// lookup with 100k cached questions in one scope; cache-hit query requests per second against
// one node beside a no-op route (`/livez`) of the same server in the same run. Figures go to
// docs/benchmarks.md. The audit trail's cost on the hit path (issue 16): the same hits against
// two nodes, one recording every query in its audit spool, one with `audit.enabled=false`.
// nginx's cost (issue 19): the same hits straight to a node and through nginx in front of it (the
// repository's configuration, infra/nginx), in alternating rounds.
// The node's own HTTP overhead (issue 20): `GET /livez` of a node against the same route of a bare
// Hummingbird application (anchor-hello), in alternating rounds.
// BENCH_PARTS picks parts (limiter,semantic,livez,hits,audit,nginx); BENCH_HIT_SECONDS and BENCH_HIT_CLIENTS
// size the last two. BENCH_AUDIT_SETTINGS (`key=value,…`) adds settings to the audited node, for
// example `audit.ship_interval_ms=60000` to measure the node's share without shipping.

@main
struct CacheBench {
    static func main() async throws {
        let parts = Set((environment["BENCH_PARTS"] ?? "limiter,semantic,livez,hits,audit,nginx").split(separator: ","))
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        if parts.contains("limiter") { try await limiterBenchmark() }
        if parts.contains("semantic") { semanticBenchmark() }
        // A connection per client (the shared client would open 8 and queue the rest).
        try await TestHTTP.$client.withValue(TestHTTP.benchmarkClient) {
            if parts.contains("livez") { try await livezBenchmark() }
            if parts.contains("hits") { try await hitBenchmark() }
            if parts.contains("audit") { try await auditBenchmark() }
            if parts.contains("nginx") { try await nginxBenchmark() }
        }
    }
}

let environment = ProcessInfo.processInfo.environment
let hitSeconds = Int(environment["BENCH_HIT_SECONDS"] ?? "10") ?? 10
let hitClients = Int(environment["BENCH_HIT_CLIENTS"] ?? "16") ?? 16

func summary(_ times: [Double]) -> String {
    "p50 \(format(percentile(times, 50))), p99 \(format(percentile(times, 99))), max \(format(times.max() ?? 0))"
}

// MARK: - 1. The limiter's step

func limiterBenchmark() async throws {
    var logger = Logger(label: "bench-cache")
    logger.logLevel = .warning
    let redis = RedisClient(configuration: TestEnvironment.shared.redis, logger: logger)
    let limiter = RateLimiter(redis: redis, settings: .init(), liveNodes: { 1 }, logger: logger)
    let tenant = UUID()
    let policy = {
        var policy = ConfigFixtures.policy(queriesPerHour: 10_000_000)
        policy.tenantQueriesPerHour = 100_000_000
        return policy
    }()
    print("\n[limiter] one decision = EVALSHA of the bucket script (key + tenant bucket) on the local Redis")
    // The round trip alone, for comparison: PING through the same client.
    var pings: [Double] = []
    for _ in 0..<20_000 {
        let begin = ContinuousClock.now
        _ = try await redis.send(["PING"])
        pings.append(milliseconds(ContinuousClock.now - begin))
    }
    print("  PING through the same client (the round trip alone): \(summary(pings))")
    try await redis.send(["CONFIG", "RESETSTAT"])
    for concurrency in [1, 16] {
        let perTask = concurrency == 1 ? 20_000 : 2_000
        let clock = ContinuousClock()
        let start = clock.now
        let times = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    let buckets = RateLimitBucket.buckets(key: UUID(), tenant: tenant, policy: policy)
                    var times: [Double] = []
                    times.reserveCapacity(perTask)
                    for _ in 0..<perTask {
                        let begin = clock.now
                        let decision = try await limiter.decide(buckets)
                        times.append(milliseconds(clock.now - begin))
                        precondition(decision.admitted && decision.source == .redis)
                    }
                    return times
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let elapsed = clock.now - start
        print(
            "  \(concurrency) caller(s): \(times.count) decisions, \(Int(Double(times.count) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))) /s; \(summary(times))"
        )
    }
    // Redis's own time per script run (the limiter's work inside Redis, without the round trip).
    let stats = try await redis.send(["INFO", "commandstats"]).string ?? ""
    if let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_evalsha:") }) {
        print("  inside Redis: \(line.dropFirst("cmdstat_".count))")
    }
    await redis.shutdown()
}

// MARK: - 2. Semantic lookup, 100k questions in one scope

func semanticBenchmark() {
    let count = Int(environment["BENCH_SEMANTIC_QUESTIONS"] ?? "100000") ?? 100_000
    let dimensions = 384
    print("\n[semantic] \(count) cached questions in one scope, \(dimensions) dimensions")
    var generator = SplitMix(seed: 7)
    func unit(_ vector: [Float]) -> [Float] {
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return vector.map { $0 / norm }
    }
    // Questions cluster by topic, as real ones do: 500 topics, each question its topic plus noise.
    let topics = (0..<500).map { _ in unit((0..<dimensions).map { _ in generator.gaussian() }) }
    var stored: [[Float]] = []
    stored.reserveCapacity(count)
    let buildStart = ContinuousClock.now
    var index = SemanticCacheIndex(dimensions: dimensions)
    for number in 0..<count {
        let topic = topics[number % topics.count]
        let vector = unit(topic.map { $0 + 0.045 * generator.gaussian() })
        stored.append(vector)
        index.add(id: String(format: "%064x", number), question: "question \(number)", vector: vector)
    }
    let buildTime = ContinuousClock.now - buildStart
    print("  built in \(format(milliseconds(buildTime))); index holds \(index.byteCount / 1_048_576) MiB")

    // Queries: half paraphrase-like (a stored question nudged: cosine about 0.97), half new.
    var times: [Double] = []
    var found = 0
    var paraphrases = 0
    for round in 0..<2000 {
        let query: [Float]
        let target: Int?
        if round % 2 == 0 {
            let chosen = Int(generator.next() % UInt64(count))
            query = unit(stored[chosen].map { $0 + 0.012 * generator.gaussian() })
            target = chosen
            paraphrases += 1
        } else {
            query = unit(topics[Int(generator.next() % 500)].map { $0 + 0.05 * generator.gaussian() })
            target = nil
        }
        let begin = ContinuousClock.now
        let best = index.nearest(query, limit: 4)
        times.append(milliseconds(ContinuousClock.now - begin))
        if let target, best.first?.index == target { found += 1 }
    }
    print("  lookup: \(summary(times)); nudged questions found first: \(found) of \(paraphrases)")
}

extension SplitMix {
    /// A standard normal draw (Box–Muller).
    mutating func gaussian() -> Float {
        let u = max(Double(self.next() >> 11) / Double(1 << 53), 1e-12)
        let v = Double(self.next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v))
    }
}

// MARK: - 3. Cache hits against a no-op route

/// Requests per second of `request` from `hitClients` concurrent clients for `seconds`, every
/// latency, and how many answers were not 200.
func load(seconds: Int, _ request: @escaping @Sendable () async throws -> TestHTTP.Reply) async throws
    -> (rate: Double, times: [Double], failures: Int)
{
    let reported = Mutex(false)
    let result = try await closedLoop(clients: hitClients, seconds: seconds) { _ in
        let reply = try await request()
        guard reply.status == 200 else {
            let first = reported.withLock { wasReported in
                defer { wasReported = true }
                return !wasReported
            }
            if first {
                print("  not 200: \(reply.status) \(reply.text.prefix(300))")
            }
            return false
        }
        return true
    }
    return (Double(result.times.count) / result.elapsed, result.times, result.failures)
}

/// Two loads in alternating rounds of 2 s, so the machine's drift affects both alike: the ratio
/// (measured / baseline) is taken per round and its median quoted.
struct PairedRounds {
    typealias Request = @Sendable () async throws -> TestHTTP.Reply

    var baselineRates: [Double] = []
    var measuredRates: [Double] = []
    var baselineTimes: [Double] = []
    var measuredTimes: [Double] = []
    var ratios: [Double] = []
    var failures = 0

    /// `hitSeconds / 2` rounds (at least 2); the baseline goes first in each, or, with
    /// `alternateOrder`, the measured load goes first in even rounds.
    static func run(baseline: @escaping Request, measured: @escaping Request, alternateOrder: Bool = false)
        async throws -> PairedRounds
    {
        var rounds = PairedRounds()
        for round in 0..<max(2, hitSeconds / 2) {
            let measuredFirst = alternateOrder && round % 2 == 0
            let first = try await load(seconds: 2, measuredFirst ? measured : baseline)
            let second = try await load(seconds: 2, measuredFirst ? baseline : measured)
            let (on, off) = measuredFirst ? (first, second) : (second, first)
            rounds.baselineRates.append(off.rate)
            rounds.measuredRates.append(on.rate)
            rounds.ratios.append(on.rate / off.rate)
            rounds.baselineTimes += off.times
            rounds.measuredTimes += on.times
            rounds.failures += on.failures + off.failures
        }
        return rounds
    }

    func report(per what: String, baseline: String, measured: String, ratio: String, target: Int) {
        print("  \(self.ratios.count) rounds of 2 s per \(what), alternating; \(self.failures) answers not 200")
        print(
            "  \(baseline): median \(Int(percentile(self.baselineRates, 50))) req/s; latency \(summary(self.baselineTimes))"
        )
        print(
            "  \(measured): median \(Int(percentile(self.measuredRates, 50))) req/s; latency \(summary(self.measuredTimes))"
        )
        let each = self.ratios.map { String(format: "%.0f %%", $0 * 100) }.joined(separator: ", ")
        print(
            "  \(ratio) per round: \(each); median \(String(format: "%.0f", percentile(self.ratios, 50) * 100)) % (target ≥ \(target) %)"
        )
    }
}

/// The demo canon published, a key of a custom Enterprise policy large enough that the run never
/// meets its limit, and the question every hit asks, an exact hit on every node of the stack.
func prepareHits(_ stack: BenchStack) async throws -> (key: String, body: String) {
    try await stack.publishDemoCanon()
    let (_, key) = try await stack.makeTenantKey(
        slug: "bench", tier: "enterprise",
        quotaPolicy: #"{"queries_per_hour": 10000000, "tenant_queries_per_hour": 10000000}"#)
    let body = #"{"question": "What does Noether's theorem state?"}"#
    for node in stack.nodes { try await waitForExactHit(node, key: key, body: body) }
    return (key, body)
}

/// Waits until `node` answers `body` with an exact hit of an answer from the demo canon (not of
/// one given before the canon loaded) under the benchmark's large limit.
func waitForExactHit(_ node: ServerProcess, key: String, body: String) async throws {
    let ready = try await TestHTTP.waitUntil(timeout: .seconds(120)) {
        let reply = try await TestHTTP.send(
            "POST", node.baseURL + "/api/v1/query", bearer: key, json: body, timeout: .seconds(30))
        return reply.status == 200 && reply.headers["x-zaas-cache"] == "exact"
            && reply.headers["ratelimit-limit"] == "10000000"
            && reply.json?["canon_version"] as? String == "base-v1"
    }
    guard ready != nil else { throw TestEnvironment.SetupError(message: "no cache hit from \(node.name)") }
}

func hitBenchmark() async throws {
    print(
        "\n[hits] one node (release), \(hitClients) concurrent clients, \(hitSeconds) s per route: GET /livez, then POST /api/v1/query (every answer an exact cache hit)"
    )
    try await BenchStack.with { stack in
        let node = stack.node
        let (key, body) = try await prepareHits(stack)

        let noop: @Sendable () async throws -> TestHTTP.Reply = {
            try await TestHTTP.send("GET", node.baseURL + "/livez")
        }
        let hit: @Sendable () async throws -> TestHTTP.Reply = {
            try await TestHTTP.send("POST", node.baseURL + "/api/v1/query", bearer: key, json: body)
        }
        for _ in 0..<200 {
            _ = try await noop()
            _ = try await hit()
        }
        let rounds = try await PairedRounds.run(baseline: noop, measured: hit)
        rounds.report(
            per: "route", baseline: "GET /livez (no-op)", measured: "POST /api/v1/query (exact hits)",
            ratio: "cache-hit rate / no-op rate", target: 50)
        let memory = try await TestHTTP.send("GET", node.metricsURL).text.split(separator: "\n")
            .filter { $0.hasPrefix("zaas_cache_lookups_total") }
        print("  node metrics: \(memory.joined(separator: "; "))")
    }
}

/// A node's `GET /livez` (its middleware: request id, problem rendering, metrics; its server
/// settings: timeouts, the connection limit) against the same route of a bare Hummingbird
/// application, in alternating rounds: what the node's HTTP layer costs before any route work.
func livezBenchmark() async throws {
    print(
        "\n[livez] one node (release) and anchor-hello (a bare Hummingbird route), \(hitClients) concurrent clients: GET /livez of each, alternating"
    )
    try await BenchStack.with { stack in
        let node = stack.node
        let anchor = try ServerProcess(
            name: "anchor-hello", executable: "anchor-hello", settings: [:], port: try RedisServerProcess.freePort(),
            logDirectory: stack.directory)
        try await anchor.start()
        defer { anchor.stop() }
        func livez(_ process: ServerProcess) -> @Sendable () async throws -> TestHTTP.Reply {
            { try await TestHTTP.send("GET", process.baseURL + "/livez") }
        }
        for _ in 0..<200 {
            _ = try await livez(anchor)()
            _ = try await livez(node)()
        }
        let rounds = try await PairedRounds.run(baseline: livez(anchor), measured: livez(node), alternateOrder: true)
        rounds.report(
            per: "server", baseline: "bare Hummingbird", measured: "node's /livez   ", ratio: "node / bare",
            target: 70)
    }
}

/// Exact cache hits on a node that records each in its audit spool against a node that records
/// nothing, in alternating rounds; the ratio per round, its median quoted (target ≥ 90 %).
func auditBenchmark() async throws {
    print(
        "\n[audit] two nodes (release), \(hitClients) concurrent clients, exact cache hits: node-1 records every query in its audit spool, node-2 has audit.enabled=false"
    )
    var audited: [String: String] = [:]
    for pair in (environment["BENCH_AUDIT_SETTINGS"] ?? "").split(separator: ",") {
        let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw TestEnvironment.SetupError(message: "BENCH_AUDIT_SETTINGS: \(pair)") }
        audited[parts[0]] = parts[1]
    }
    if !audited.isEmpty { print("  node-1 also has \(audited.sorted { $0.key < $1.key })") }
    try await BenchStack.with(nodeCount: 2, settingsOfNode: [1: audited, 2: ["audit.enabled": "false"]]) { stack in
        let (key, body) = try await prepareHits(stack)
        let (audited, unaudited) = (stack.nodes[0], stack.nodes[1])
        func hit(_ node: ServerProcess) -> @Sendable () async throws -> TestHTTP.Reply {
            { try await TestHTTP.send("POST", node.baseURL + "/api/v1/query", bearer: key, json: body) }
        }
        for _ in 0..<200 {
            _ = try await hit(audited)()
            _ = try await hit(unaudited)()
        }
        // Which node goes first alternates too.
        let rounds = try await PairedRounds.run(baseline: hit(unaudited), measured: hit(audited), alternateOrder: true)
        rounds.report(
            per: "node", baseline: "without audit", measured: "with audit   ", ratio: "with / without", target: 90)
        try await sustainedLoad(node: audited, key: key, body: body)
        try await ingestThroughput(stack)
    }
}

/// The audited node's spool and shipping lag while it answers 1 000 queries a second (exact
/// hits, paced) for 20 s: both sampled every second from its metrics.
func sustainedLoad(node: ServerProcess, key: String, body: String) async throws {
    let perSecond = 1000
    let clients = 10
    let seconds = 20
    print("  sustained: \(perSecond) queries/s for \(seconds) s (paced, \(clients) clients) on node-1")
    func gauge(_ name: String) async throws -> Double {
        let line = try await TestHTTP.send("GET", node.metricsURL).text.split(separator: "\n")
            .first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
    }
    let clock = ContinuousClock()
    let start = clock.now
    let sent = try await withThrowingTaskGroup(of: Int.self) { group in
        for client in 0..<clients {
            group.addTask {
                let interval = Duration.seconds(1) / (perSecond / clients)
                var count = 0
                var next = start + interval * Double(client) / Double(clients)
                while next < start + .seconds(seconds) {
                    try await Task.sleep(until: next)
                    _ = try await TestHTTP.send(
                        "POST", node.baseURL + "/api/v1/query", bearer: key, json: body)
                    count += 1
                    next += interval
                }
                return count
            }
        }
        group.addTask {
            var spool: [Double] = []
            var lag: [Double] = []
            while clock.now < start + .seconds(seconds) {
                try await Task.sleep(for: .seconds(1))
                spool.append(try await gauge("zaas_audit_spool_bytes"))
                lag.append(try await gauge("zaas_audit_ship_lag_seconds"))
            }
            print(
                "  spool bytes per second: \(spool.map { String(Int($0)) }.joined(separator: ", ")); max \(Int(spool.max() ?? 0))"
            )
            print("  ship lag (s) per second: \(lag.map { String(format: "%.1f", $0) }.joined(separator: ", "))")
            return 0
        }
        return try await group.reduce(0, +)
    }
    let elapsed = (clock.now - start) / .seconds(1)
    print("  sent \(sent) queries in \(String(format: "%.1f", elapsed)) s (\(Int(Double(sent) / elapsed))/s)")
    try await Task.sleep(for: .seconds(3))
    print("  after 3 s: spool \(Int(try await gauge("zaas_audit_spool_bytes"))) bytes")
}

/// Events per second the control plane stores: batches of 2 000 synthetic query events (as nodes
/// ship them) from two senders, 100 batches.
func ingestThroughput(_ stack: BenchStack) async throws {
    let token = TestEnvironment.shared.nodeToken(for: stack.nodes[0].name)
    let (tenantText, _) = try await stack.makeTenantKey(slug: "ingest", tier: "enterprise")
    guard let tenant = UUID(uuidString: tenantText) else {
        throw TestEnvironment.SetupError(message: "tenant id \(tenantText)")
    }
    let batches = 100
    let batchSize = 2000
    func batch() throws -> [UInt8] {
        var lines = [UInt8]()
        for _ in 0..<batchSize {
            let event = AuditEvent(
                kind: .query, tenantID: tenant, keyID: UUID(), queryID: UUID(), requestID: UUID().lowercased,
                node: "node-1", outcome: "cache_exact", status: 200,
                question: .init(
                    text: "What does Noether's theorem state?", redacted: true,
                    fingerprint: String(repeating: "ab", count: 32)),
                answer: .init(
                    text: String(repeating: "An answer of some length. ", count: 12),
                    citations: [.init(id: "claim.noether-theorem", canonVersion: "base-v1", status: "Proven")],
                    confidence: 0.8, modelUsed: "zora-extractive-local", canonVersion: "base-v1"),
                cache: .exact, timingsMs: ["limit": 0.4, "total": 1.1])
            lines += Array(try AuditEvent.encoder.encode(event)) + [0x0A]
        }
        return lines
    }
    let bodies = try (0..<4).map { _ in try batch() }
    print(
        "  ingest: \(batches) batches of \(batchSize) events (\(bodies[0].count / batchSize) bytes each), two senders")
    let clock = ContinuousClock()
    let start = clock.now
    let stored = try await withThrowingTaskGroup(of: Int.self) { group in
        for sender in 0..<2 {
            group.addTask {
                var stored = 0
                for index in stride(from: sender, to: batches, by: 2) {
                    // Fresh ids per batch: the same body twice would be stored once.
                    var body = bodies[index % bodies.count]
                    if index >= bodies.count { body = try batch() }
                    var request = HTTPClientRequest(url: stack.control.baseURL + InternalAPI.audit)
                    request.method = .POST
                    request.headers.add(name: "Authorization", value: "Bearer \(token)")
                    request.headers.add(name: "Content-Type", value: "application/x-ndjson")
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
                    let reply = try await response.body.collect(upTo: 1 << 20)
                    let json = try JSONSerialization.jsonObject(with: Data(reply.readableBytesView)) as? [String: Any]
                    stored += json?["stored"] as? Int ?? 0
                }
                return stored
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = (clock.now - start) / .seconds(1)
    print(
        "  ingest: \(stored) events stored in \(String(format: "%.1f", elapsed)) s: \(Int(Double(stored) / elapsed)) events/s (making the batches included)"
    )
}

// MARK: - 5. nginx in front

/// Exact cache hits straight to a node and through nginx in front of that node alone (the
/// repository's template rendered by infra/nginx/render.sh, as `make run` does), in alternating
/// rounds; the ratio per round, its median quoted.
func nginxBenchmark() async throws {
    print(
        "\n[nginx] one node (release), \(hitClients) concurrent clients, exact cache hits: straight to the node, and through nginx (infra/nginx, 2 workers, keep-alive to the node)"
    )
    try await BenchStack.with { stack in
        let node = stack.node
        let (key, body) = try await prepareHits(stack)

        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        let directory = ConfigFixtures.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (port, statusPort) = (try RedisServerProcess.freePort(), try RedisServerProcess.freePort())
        let render = try ChildProcess(
            arguments: [
                "/bin/sh", root + "/infra/nginx/render.sh", root + "/infra/nginx/zaas.conf.template",
                directory + "/nginx.conf",
            ],
            environment: [
                "PATH": "/usr/bin:/bin", "ZAAS_NGINX_NODES": "127.0.0.1:\(node.port)",
                "ZAAS_NGINX_CONTROL": "127.0.0.1:\(stack.control.port)", "ZAAS_NGINX_LISTEN": "127.0.0.1:\(port)",
                "ZAAS_NGINX_STATUS_LISTEN": "127.0.0.1:\(statusPort)", "ZAAS_NGINX_PREFIX": directory,
                "ZAAS_NGINX_ACCESS_LOG": directory + "/access.log", "ZAAS_NGINX_ERROR_LOG": directory + "/error.log",
                "ZAAS_NGINX_USER": getuid() == 0 ? "user root root;" : "",
            ])
        _ = try await TestHTTP.waitUntil(timeout: .seconds(10)) { !render.isRunning }
        guard FileManager.default.fileExists(atPath: directory + "/nginx.conf") else {
            throw TestEnvironment.SetupError(message: "render.sh failed")
        }
        let nginx = try ChildProcess(
            arguments: [
                "/usr/sbin/nginx", "-p", directory, "-c", directory + "/nginx.conf", "-e", directory + "/error.log",
            ],
            environment: ["PATH": "/usr/bin:/bin"], logFile: directory + "/nginx.log")
        defer { nginx.kill() }
        let entry = "http://127.0.0.1:\(port)"
        let up = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
            (try? await TestHTTP.send("GET", entry + "/livez"))?.status == 200
        }
        guard up != nil else { throw TestEnvironment.SetupError(message: "nginx did not start") }

        let direct: @Sendable () async throws -> TestHTTP.Reply = {
            try await TestHTTP.send("POST", node.baseURL + "/api/v1/query", bearer: key, json: body)
        }
        let proxied: @Sendable () async throws -> TestHTTP.Reply = {
            try await TestHTTP.send("POST", entry + "/api/v1/query", bearer: key, json: body)
        }
        for _ in 0..<200 {
            _ = try await direct()
            _ = try await proxied()
        }
        let rounds = try await PairedRounds.run(baseline: direct, measured: proxied, alternateOrder: true)
        rounds.report(
            per: "path", baseline: "straight to the node", measured: "through nginx      ",
            ratio: "through nginx / straight", target: 80)
    }
}
