import ControlPlane
import DataPlane
import Foundation
import Logging
import PostgresNIO
import Shared
import TestSupport

// Config distribution (issue 4): in-process key verification; building, encoding, transferring
// and applying a snapshot of 100k keys, with node memory; and propagation of 100 revocations to
// three data-plane nodes running as processes. Figures go to docs/benchmarks.md.

@main
struct ConfigBench {
    static func main() async throws {
        try await runBenchmark()
    }
}

let environment = ProcessInfo.processInfo.environment
let snapshotKeys = Int(environment["BENCH_SNAPSHOT_KEYS"] ?? "100000") ?? 100_000
let revocations = Int(environment["BENCH_REVOCATIONS"] ?? "100") ?? 100
let benchLogger: Logger = {
    var logger = Logger(label: "bench-config")
    logger.logLevel = .warning
    return logger
}()

func runBenchmark() async throws {
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, keys: \(snapshotKeys)")
    // BENCH_PARTS=verify,snapshot,propagation (the default) picks what runs.
    let parts = Set((environment["BENCH_PARTS"] ?? "verify,snapshot,propagation").split(separator: ","))
    if parts.contains("verify") { try verificationBenchmark() }
    if parts.contains("snapshot") { try await snapshotBenchmark() }
    if parts.contains("propagation") { try await propagationBenchmark() }
}

// MARK: - Statistics

/// Runs `body` `runs` times and returns each run's time in ms.
func timed<T>(runs: Int, _ body: () async throws -> T) async rethrows -> (times: [Double], last: T) {
    let clock = ContinuousClock()
    var times: [Double] = []
    var last: T?
    for _ in 0..<runs {
        let start = clock.now
        last = try await body()
        times.append(milliseconds(clock.now - start))
    }
    return (times, last!)
}

// MARK: - 1. Key verification in process

func verificationBenchmark() throws {
    let tenants = (0..<1000).map { ConfigFixtures.tenant(slug: "t\($0)") }
    var keys: [KeyConfig] = []
    var texts: [String] = []
    keys.reserveCapacity(snapshotKeys)
    for index in 0..<snapshotKeys {
        let key = ConfigFixtures.key(tenant: tenants[index % tenants.count].id)
        keys.append(key.record)
        if index % 10 == 0 { texts.append("Bearer " + key.text) }
    }
    let state = ConfigState(snapshot: ConfigFixtures.snapshot(version: 1, tenants: tenants, keys: keys))
    let verifier = KeyVerifier(digester: try APIKeyDigester(pepper: Hex.decode(TestEnvironment.testPepper)!))
    let unknown = (0..<1000).map { _ in "Bearer " + ConfigFixtures.key(tenant: tenants[0].id).text }

    let clock = ContinuousClock()
    func measure(_ headers: [String], operations: Int, expectSuccess: Bool) -> [Double] {
        var samples: [Double] = []
        samples.reserveCapacity(operations)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<operations {
            let header = headers[Int(generator.next(upperBound: UInt(headers.count)))]
            let start = clock.now
            let result = verifier.verify(
                authorization: header, tenantHeader: nil, requiredScopes: [.query], state: state)
            let elapsed = clock.now - start
            if case .success = result { precondition(expectSuccess) } else { precondition(!expectSuccess) }
            samples.append(milliseconds(elapsed) * 1000)
        }
        return samples
    }
    _ = measure(texts, operations: 20_000, expectSuccess: true)  // warm-up
    let valid = measure(texts, operations: 200_000, expectSuccess: true)
    let invalid = measure(unknown, operations: 50_000, expectSuccess: false)
    var overhead: [Double] = []
    for _ in 0..<50_000 {
        let start = clock.now
        overhead.append(milliseconds(clock.now - start) * 1000)
    }
    print("key verification (in process, \(keys.count) keys, one thread, µs per request):")
    print(
        "  valid key:   p50 \(format(percentile(valid, 50), "µs"))  p99 \(format(percentile(valid, 99), "µs"))"
            + "  mean \(format(valid.reduce(0, +) / Double(valid.count), "µs"))")
    print(
        "  unknown key: p50 \(format(percentile(invalid, 50), "µs"))  p99 \(format(percentile(invalid, 99), "µs"))")
    print("  clock overhead per sample: p50 \(format(percentile(overhead, 50), "µs"))")
}

// MARK: - 2. A snapshot of 100k keys

func snapshotBenchmark() async throws {
    try await TestDatabase.withFresh { database in
        _ = try await withPostgresClient(database.owner) { owner in
            try await Migrator(applicationRole: TestEnvironment.shared.appUser, logger: benchLogger).migrate(
                client: owner)
        }
        try await database.enrollNodes(["node-baseline", "node-fresh"] + ["bench"])
        let directory = ConfigFixtures.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let testEnvironment = TestEnvironment.shared
        let control = try ServerProcess(
            name: "control", executable: "zaas-control",
            settings: testEnvironment.controlPlaneSettings(database: database.name).merging([
                "log.level": "warning", "migrations.on_start": "false",
            ]) { $1 },
            port: try RedisServerProcess.freePort(), logDirectory: directory)
        try await control.start()
        defer { control.stop() }
        func node(_ name: String) throws -> ServerProcess {
            try ServerProcess(
                name: name, executable: "zaas-data",
                settings: testEnvironment.dataPlaneSettings(
                    controlURL: control.baseURL, nodeID: name, stateDirectory: directory + "/\(name)"
                ).merging(["log.level": "warning"]) { $1 },
                port: try RedisServerProcess.freePort(), logDirectory: directory)
        }
        func waitForVersion(_ node: ServerProcess, atLeast version: Int) async throws -> Duration? {
            try await TestHTTP.waitUntil(timeout: .seconds(120)) {
                let health = try? await TestHTTP.send("GET", node.baseURL + "/api/v1/health")
                return (health?.json?["config_version"] as? Int ?? -1) >= version && health?.status == 200
            }
        }

        // A node holding the empty configuration: the memory baseline.
        let baseline = try node("node-baseline")
        try await baseline.start()
        defer { baseline.stop() }
        _ = try await waitForVersion(baseline, atLeast: 0)
        let emptyMemory = baseline.memory!

        // 1000 tenants and the keys, inserted by the owner (the change-log trigger runs per row).
        let insertStart = ContinuousClock.now
        try await withPostgresClient(database.owner) { owner in
            try await owner.withTransaction(logger: benchLogger) { connection in
                try await connection.query(
                    "SELECT set_config('app.operator_id', gen_random_uuid()::text, true)", logger: benchLogger)
                try await connection.query(
                    """
                    INSERT INTO tenants (name, slug, tier_id)
                    SELECT 'Tenant ' || i, 'tenant-' || i, 'pro' FROM generate_series(1, 1000) AS i
                    """,
                    logger: benchLogger)
                try await connection.query(
                    """
                    INSERT INTO api_keys (tenant_id, key_id, environment, secret_digest, name, scopes)
                    SELECT t.ids[1 + i % 1000], lpad(to_hex(i), 20, '0'), 'live',
                           sha256(convert_to('secret ' || i, 'UTF8')), 'bench', ARRAY['query']
                    FROM generate_series(1, \(snapshotKeys)) AS i,
                         (SELECT array_agg(id ORDER BY id) AS ids FROM tenants) AS t
                    """,
                    logger: benchLogger)
            }
        }
        print("snapshot of \(snapshotKeys) keys, 1000 tenants:")
        print("  insert (setup): \(format(milliseconds(ContinuousClock.now - insertStart)))")

        let settings = DataPlaneSettings(usageReportIntervalMilliseconds: 15_000)
        let (buildTimes, snapshot) = try await withPostgresClient(database.app) { app in
            try await timed(runs: 5) {
                try await ConfigSource(client: app, settings: settings).snapshot(logger: benchLogger)
            }
        }
        let signingKey = ConfigFixtures.signingKey
        let (encodeTimes, document) = await timed(runs: 5) {
            SignedConfigDocument.encode(.full(snapshot), signedWith: signingKey)
        }
        let url = control.baseURL + "/internal/v1/config?node_id=bench&wait=0"
        let (transferTimes, fetched) = try await timed(runs: 6) {
            try await TestHTTP.send("GET", url, bearer: testEnvironment.nodeToken(for: "bench"), timeout: .seconds(120))
        }
        precondition(fetched.status == 200)
        let verification = signingKey.verificationKey
        let store = ConfigStore()
        let (applyTimes, applied) = try await timed(runs: 5) {
            guard case .full(let received) = try SignedConfigDocument.decode(fetched.body, verifyingWith: verification)
            else { fatalError("expected a full snapshot") }
            let state = ConfigState(snapshot: received)
            store.install(state)
            return state
        }
        precondition(applied.keys.count == snapshotKeys)
        print("  build from PostgreSQL (read + decode rows): median \(format(percentile(buildTimes, 50)))")
        print("  encode + sign: median \(format(percentile(encodeTimes, 50))), \(document.count) bytes")
        print(
            "  fetch over HTTP: first (control plane builds, signs, sends) \(format(transferTimes[0])),"
                + " cached median \(format(percentile(Array(transferTimes.dropFirst()), 50)))")
        print("  apply (verify + decode + index + swap): median \(format(percentile(applyTimes, 50)))")

        // Memory of nodes holding it: the baseline node got it as one delta; a new node as a snapshot.
        let version = Int(snapshot.version)
        _ = try await waitForVersion(baseline, atLeast: version)
        let deltaMemory = baseline.memory!
        let fresh = try node("node-fresh")
        let startedAt = ContinuousClock.now
        try await fresh.start()
        defer { fresh.stop() }
        guard let ready = try await waitForVersion(fresh, atLeast: version) else {
            print("  node did not become ready: \(fresh.logTail())")
            return
        }
        let freshMemory = fresh.memory!
        print(
            "  new node, process start to ready with the snapshot: \(format(milliseconds(ContinuousClock.now - startedAt)))"
                + " (ready wait \(format(milliseconds(ready))))")
        print("  node memory, empty config: RSS \(emptyMemory.residentKiB / 1024) MiB")
        print(
            "  node memory after a \(snapshotKeys)-key delta: RSS \(deltaMemory.residentKiB / 1024) MiB,"
                + " peak \(deltaMemory.peakKiB / 1024) MiB")
        print(
            "  new node with the \(snapshotKeys)-key snapshot: RSS \(freshMemory.residentKiB / 1024) MiB,"
                + " peak \(freshMemory.peakKiB / 1024) MiB")
    }
}

// MARK: - 3. Propagation of revocations to three nodes

func propagationBenchmark() async throws {
    try await BenchStack.with(nodeCount: 3) { stack in
        let control = stack.control
        let nodes = stack.nodes
        let password = BenchStack.password

        let (_, operatorSession) = try await json(
            "POST", control.baseURL + "/admin/v1/sessions",
            body: #"{"email": "ops@bench.example", "password": "\#(password)"}"#)
        let operatorToken = operatorSession["token"] as! String
        let (_, tenant) = try await json(
            "POST", control.baseURL + "/admin/v1/tenants", token: operatorToken,
            body: #"{"name": "Bench", "slug": "bench", "tier": "enterprise"}"#)
        let tenantID = tenant["id"] as! String
        _ = try await json(
            "POST", control.baseURL + "/admin/v1/tenants/\(tenantID)/admins", token: operatorToken,
            body: #"{"email": "admin@bench.example", "password": "\#(password)", "role": "admin"}"#)
        let (_, session) = try await json(
            "POST", control.baseURL + "/admin/v1/sessions",
            body: #"{"email": "admin@bench.example", "password": "\#(password)"}"#)
        let token = session["token"] as! String
        var keys: [(id: String, text: String)] = []
        for _ in 0..<revocations {
            let (_, created) = try await json(
                "POST", control.baseURL + "/admin/v1/keys", token: token,
                body: #"{"name": "bench", "scopes": ["query"]}"#)
            keys.append(((created["api_key"] as! [String: Any])["id"] as! String, created["key"] as! String))
        }
        for node in nodes {
            for key in keys {
                let accepted = try await TestHTTP.waitUntil(timeout: .seconds(30)) {
                    try await TestHTTP.send("GET", node.baseURL + "/api/v1/key", bearer: key.text).status == 200
                }
                precondition(accepted != nil, "\(node.name) never accepted a key")
            }
        }

        let clock = ContinuousClock()
        var slowest: [Double] = []
        var perNode: [Double] = []
        for key in keys {
            let start = clock.now
            let revoke = try await TestHTTP.send("DELETE", control.baseURL + "/admin/v1/keys/\(key.id)", bearer: token)
            precondition(revoke.status == 204)
            let committed = milliseconds(clock.now - start)
            let times = try await withThrowingTaskGroup(of: Double.self) { group in
                for node in nodes {
                    group.addTask {
                        while try await TestHTTP.send("GET", node.baseURL + "/api/v1/key", bearer: key.text).status
                            != 401
                        {
                        }
                        return milliseconds(clock.now - start)
                    }
                }
                return try await group.reduce(into: [Double]()) { $0.append($1) }
            }
            perNode += times
            slowest.append(times.max()!)
            _ = committed
        }
        print(
            "propagation: \(revocations) revocations one by one, 3 nodes (ms from sending DELETE until every node answers 401):"
        )
        print(
            "  all nodes refuse: p50 \(format(percentile(slowest, 50)))  p90 \(format(percentile(slowest, 90)))"
                + "  p99 \(format(percentile(slowest, 99)))  max \(format(slowest.max()!))")
        print("  single node refuses: p50 \(format(percentile(perNode, 50)))  p99 \(format(percentile(perNode, 99)))")
    }
}

func json(_ method: String, _ url: String, token: String? = nil, body: String? = nil) async throws
    -> (Int, [String: Any])
{
    let reply = try await TestHTTP.send(method, url, bearer: token, json: body)
    guard (200..<300).contains(reply.status) else {
        throw TestEnvironment.SetupError(message: "\(method) \(url): \(reply.status) \(reply.text)")
    }
    return (reply.status, reply.json ?? [:])
}
