import Configuration
import Foundation
import Logging
import Shared
import TestSupport
import Testing

@testable import DataPlane

@Suite("node configuration: applying updates, the disk copy, key verification")
struct ConfigStateTests {
    static let logger = Logger(label: "test.config")

    struct World {
        let tenantA = ConfigFixtures.tenant(slug: "alpha")
        let tenantB = ConfigFixtures.tenant(slug: "beta")
        let keyA: (record: KeyConfig, text: String)
        let keyB: (record: KeyConfig, text: String)

        init() {
            self.keyA = ConfigFixtures.key(tenant: self.tenantA.id, scopes: [.query, .statsRead])
            self.keyB = ConfigFixtures.key(tenant: self.tenantB.id)
        }

        var snapshot: NodeConfigSnapshot {
            ConfigFixtures.snapshot(version: 10, tenants: [tenantA, tenantB], keys: [keyA.record, keyB.record])
        }
    }

    @Test("a delta upserts and removes keys and tenants; a tenant's removal takes its keys")
    func applyDelta() throws {
        let world = World()
        let state = ConfigState(snapshot: world.snapshot)
        let newKey = ConfigFixtures.key(tenant: world.tenantA.id)
        var suspendedA = world.tenantA
        suspendedA.status = .suspended
        let next = try state.applying(
            ConfigDelta(
                fromVersion: 10, toVersion: 13, createdAt: Date(), settings: ConfigFixtures.settings,
                upsertedTenants: [suspendedA], removedTenants: [world.tenantB.id],
                upsertedKeys: [newKey.record], removedKeys: [world.keyA.record.id]))
        #expect(next.version == 13)
        #expect(next.tenants[world.tenantA.id]?.status == .suspended)
        #expect(next.tenants[world.tenantB.id] == nil)
        #expect(next.keys[world.keyA.record.keyID] == nil)
        #expect(next.keys[world.keyB.record.keyID] == nil)  // went with tenant B
        #expect(next.keys[newKey.record.keyID] == newKey.record)
        // The old state is untouched: readers holding it see one version throughout.
        #expect(state.version == 10 && state.keys.count == 2 && state.tenants.count == 2)

        #expect(throws: ConfigApplyError.versionMismatch(held: 13, deltaFrom: 10)) {
            try next.applying(
                ConfigDelta(fromVersion: 10, toVersion: 14, createdAt: Date(), settings: ConfigFixtures.settings))
        }
    }

    @Test("verification: every kind of bad key is the same 401; scope and tenant header are 403")
    func verify() throws {
        let world = World()
        let now = Date()
        var suspended = world.tenantB
        suspended.status = .suspended
        let expired = ConfigFixtures.key(tenant: world.tenantA.id, expiresAt: now.addingTimeInterval(-1))
        let revoked = ConfigFixtures.key(tenant: world.tenantA.id, revokedAt: now.addingTimeInterval(-1))
        let rotating = ConfigFixtures.key(tenant: world.tenantA.id, revokedAt: now.addingTimeInterval(600))
        let testKey = ConfigFixtures.key(tenant: world.tenantA.id, environment: .test)
        let state = ConfigState(
            snapshot: ConfigFixtures.snapshot(
                version: 3, tenants: [world.tenantA, suspended],
                keys: [
                    world.keyA.record, world.keyB.record, expired.record, revoked.record, rotating.record,
                    testKey.record,
                ]))
        let verifier = KeyVerifier(digester: try APIKeyDigester(pepper: Hex.decode(TestEnvironment.testPepper)!))
        func check(_ header: String?, scopes: KeyScopes = [.query], tenant: String? = nil) -> Result<
            Caller, KeyVerifier.Failure
        > {
            verifier.verify(authorization: header, tenantHeader: tenant, requiredScopes: scopes, state: state, now: now)
        }

        let good = try check("Bearer \(world.keyA.text)").get()
        #expect(good.tenant.id == world.tenantA.id && good.key.id == world.keyA.record.id && good.configVersion == 3)
        #expect((try? check("bearer \(world.keyA.text)").get()) != nil)
        #expect((try? check("Bearer \(rotating.text)").get()) != nil)  // in its grace period
        #expect((try? check("Bearer \(testKey.text)").get()) != nil)

        let parsed = try APIKey(parsing: world.keyA.text)
        let wrongSecret = "zaas_live_\(parsed.keyID)_\(String(repeating: "0", count: 64))"
        let wrongEnvironment = world.keyA.text.replacingOccurrences(of: "zaas_live_", with: "zaas_test_")
        let unknown = ConfigFixtures.key(tenant: world.tenantA.id).text
        let otherPepper = ConfigFixtures.key(tenant: world.tenantA.id, pepper: String(repeating: "6b", count: 32))
        for header in [
            nil, "", "Bearer", "Bearer ", "Basic \(world.keyA.text)", "Bearer \(world.keyA.text) ",
            "Bearer \(wrongSecret)", "Bearer \(wrongEnvironment)", "Bearer \(unknown)", "Bearer \(expired.text)",
            "Bearer \(revoked.text)", "Bearer \(world.keyB.text)", "Bearer \(otherPepper.text)",
            "Bearer zaas_live_short_00",
        ] {
            #expect(check(header).failureValue == .unauthenticated, "\(header ?? "nil")")
        }
        #expect(check("Bearer \(world.keyA.text)", scopes: [.canonWrite]).failureValue == .missingScope([.canonWrite]))
        #expect(
            check("Bearer \(world.keyA.text)", tenant: world.tenantB.id.uuidString).failureValue == .wrongTenant)
        #expect(check("Bearer \(world.keyA.text)", tenant: "not-a-uuid").failureValue == .wrongTenant)
        #expect(
            (try? check("Bearer \(world.keyA.text)", tenant: world.tenantA.id.uuidString.lowercased()).get()) != nil)
        #expect(
            verifier.verify(
                authorization: "Bearer \(world.keyA.text)", tenantHeader: nil, requiredScopes: [], state: nil
            )
            .failureValue == .notReady)
    }

    @Test("disk copy: snapshot plus journal load back; a cut journal keeps its valid prefix")
    func diskRoundTrip() throws {
        let world = World()
        let key = ConfigFixtures.signingKey
        let files = SnapshotFiles(directory: ConfigFixtures.temporaryDirectory())
        try files.saveSnapshot(SignedConfigDocument.encode(.full(world.snapshot), signedWith: key))
        let extra = ConfigFixtures.key(tenant: world.tenantA.id)
        let deltas = [
            ConfigDelta(
                fromVersion: 10, toVersion: 11, createdAt: Date(), settings: ConfigFixtures.settings,
                upsertedKeys: [extra.record]),
            ConfigDelta(
                fromVersion: 11, toVersion: 12, createdAt: Date(), settings: ConfigFixtures.settings,
                removedKeys: [world.keyA.record.id]),
        ]
        for delta in deltas {
            try files.appendDelta(SignedConfigDocument.encode(.delta(delta), signedWith: key))
        }
        let verification = key.verificationKey
        let loaded = try #require(files.load(verifyingWith: verification, logger: Self.logger))
        #expect(loaded.state.version == 12 && loaded.journalEntries == 2)
        #expect(loaded.state.keys[extra.record.keyID] != nil && loaded.state.keys[world.keyA.record.keyID] == nil)

        // A crash mid-append leaves half a document: the node keeps version 11 and cuts the tail.
        let journal = try Data(contentsOf: URL(fileURLWithPath: files.journalPath))
        let firstLength = SignedConfigDocument.encode(.delta(deltas[0]), signedWith: key).count
        try journal.prefix(firstLength + 30).write(to: URL(fileURLWithPath: files.journalPath))
        let cut = try #require(files.load(verifyingWith: verification, logger: Self.logger))
        #expect(cut.state.version == 11 && cut.journalEntries == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: files.journalPath)).count == firstLength)
        // Appends after the cut are readable again.
        try files.appendDelta(SignedConfigDocument.encode(.delta(deltas[1]), signedWith: key))
        #expect(files.load(verifyingWith: verification, logger: Self.logger)?.state.version == 12)
    }

    @Test("disk copy: a corrupt, truncated or foreign-signed snapshot is refused, and nothing is served")
    func diskRefusals() throws {
        let world = World()
        let document = SignedConfigDocument.encode(.full(world.snapshot), signedWith: ConfigFixtures.signingKey)
        let verification = ConfigFixtures.signingKey.verificationKey
        var flipped = document
        flipped[document.count / 2] ^= 0xFF
        let cases: [(String, [UInt8])] = [
            ("truncated", Array(document.prefix(document.count - 100))),
            ("corrupt", flipped),
            ("foreign key", SignedConfigDocument.encode(.full(world.snapshot), signedWith: ConfigSigningKey())),
            ("empty", []),
            ("not ours", Array("hello".utf8)),
        ]
        for (name, bytes) in cases {
            let directory = ConfigFixtures.temporaryDirectory()
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/config.snapshot"))
            #expect(
                SnapshotFiles(directory: directory).load(verifyingWith: verification, logger: Self.logger) == nil,
                "\(name)")
        }
        #expect(
            SnapshotFiles(directory: ConfigFixtures.temporaryDirectory()).load(
                verifyingWith: verification, logger: Self.logger) == nil)
    }
}

@Suite("data plane configuration")
struct DataPlaneConfigurationTests {
    static func configuration(_ overrides: [String: String]) async throws -> DataPlaneConfiguration {
        var environment = [
            "ZAAS_NODES_TOKEN": "znode_" + String(repeating: "0a", count: 32),
            "ZAAS_CONFIG_PUBLIC_KEY": ConfigSigningKey().verificationKey.hex,
            "ZAAS_KEYS_PEPPER": String(repeating: "ab", count: 32),
            "ZAAS_EMBEDDINGS_MODEL_DIR": TestEnvironment.modelDirectory,
        ]
        environment.merge(overrides) { $1 }
        return try DataPlaneConfiguration(
            reader: try await ConfigurationLoader.reader(
                defaults: DataPlaneConfiguration.defaults, environment: environment))
    }

    @Test("the public key, pepper and node credential are required and checked at start")
    func required() async throws {
        let valid = try await Self.configuration(["ZAAS_NODE_ID": "n/1 x"])
        #expect(valid.stateDirectory == ".zaas/node-state/n_1_x")
        #expect(valid.advertisedAddress == "http://127.0.0.1:8401")
        for (key, value) in [
            ("ZAAS_CONFIG_PUBLIC_KEY", ""), ("ZAAS_CONFIG_PUBLIC_KEY", "abcd"),
            ("ZAAS_CONFIG_PUBLIC_KEY", String(repeating: "AB", count: 32)), ("ZAAS_KEYS_PEPPER", "ab"),
            // A node's own credential, as `zaasctl nodes issue` prints it: not a shared secret.
            ("ZAAS_NODES_TOKEN", ""), ("ZAAS_NODES_TOKEN", String(repeating: "n", count: 40)),
            ("ZAAS_NODES_TOKEN", "znode_" + String(repeating: "0A", count: 32)),
            ("ZAAS_NODES_TOKEN", "znode_" + String(repeating: "0a", count: 31)),
            ("ZAAS_CONTROL_WATCH_WAIT_SECONDS", "0"), ("ZAAS_CONTROL_URL", "ftp://x"),
            // The node credential in the clear over a network: refused unless explicitly allowed.
            ("ZAAS_CONTROL_URL", "http://10.0.0.5:8400"), ("ZAAS_CONTROL_URL", "http://control.example:8400"),
            ("ZAAS_CONTROL_URL", "http://127.0.0.1.example:8400"),
        ] {
            await #expect(throws: ConfigurationError.self, "\(key)=\(value)") {
                _ = try await Self.configuration([key: value])
            }
        }
        for url in [
            "http://127.0.0.1:8400", "http://127.1.2.3:8400", "http://localhost:8400", "http://[::1]:8400",
            "https://control.example",
        ] {
            #expect(try await Self.configuration(["ZAAS_CONTROL_URL": url]).controlPlane.url == url)
        }
        let allowed = try await Self.configuration([
            "ZAAS_CONTROL_URL": "http://10.0.0.5:8400", "ZAAS_CONTROL_ALLOW_INSECURE_HTTP": "true",
        ])
        #expect(allowed.controlPlane.url == "http://10.0.0.5:8400")
    }

    @Test("a missing model is a start-up error naming the setting and the command that fetches it")
    func missingModel() async throws {
        let configuration = try await Self.configuration(["ZAAS_EMBEDDINGS_MODEL_DIR": "/nonexistent/model"])
        do {
            _ = try DataPlaneNode(configuration: configuration, logger: Logger(label: "test"))
            Issue.record("a node started without its model")
        } catch let error as ConfigurationError {
            #expect(error.description.contains("ZAAS_EMBEDDINGS_MODEL_DIR"))
            #expect(error.description.contains("infra/fetch-model.sh"))
        }
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}

@Suite("batched last-used reports")
struct KeyUsageRecorderTests {
    struct ControlPlaneUnavailable: Error {}

    final class Sink: @unchecked Sendable {
        let lock = NSLock()
        var failNext = true
        var batches: [[(UUID, Date)]] = []
    }

    @Test("a failed report is kept and merged with newer uses; batches stay within the limit")
    func failedReportIsKept() async throws {
        let sink = Sink()
        let recorder = KeyUsageRecorder(interval: { .seconds(60) }, logger: Logger(label: "test.usage")) { batch in
            try sink.lock.withLock {
                if sink.failNext {
                    sink.failNext = false
                    throw ControlPlaneUnavailable()
                }
                sink.batches.append(batch)
            }
        }
        let key = UUID()
        let early = Date(timeIntervalSince1970: 1_800_000_000)
        let late = early.addingTimeInterval(60)
        recorder.record(key, at: early)
        await recorder.flush()  // fails: kept
        #expect(sink.batches.isEmpty)
        recorder.record(key, at: late)
        let others = (0..<KeyUsageRecorder.batchSize).map { _ in UUID() }
        for other in others { recorder.record(other, at: early) }
        await recorder.flush()
        #expect(sink.batches.count == 2)
        #expect(sink.batches.allSatisfy { $0.count <= KeyUsageRecorder.batchSize })
        let reported = sink.batches.flatMap { $0 }
        #expect(reported.count == others.count + 1)
        #expect(reported.first { $0.0 == key }?.1 == late)
        await recorder.flush()  // nothing pending: nothing sent
        #expect(sink.batches.count == 2)
    }
}
