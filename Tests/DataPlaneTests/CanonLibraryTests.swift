import AsyncHTTPClient
import Canon
import Embeddings
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Shared
import TestSupport
import Testing

@testable import DataPlane

/// The node's canon: fetched by hash and verified before use; until a named version is loaded,
/// queries get 503 `canon-not-ready` rather than answers from part of the canon.
@Suite("data plane canon library")
struct CanonLibraryTests {
    static func artifact() -> [UInt8] {
        let entries = [CanonEntry(id: "e1", kind: .claim, title: "One", body: "A claim.", status: .proven)]
        return CanonIndexWriter.artifact(
            label: "acme-v1", entries: entries, chunks: Chunker().chunks(of: entries), embeddings: [1, 0, 0, 0],
            dimensions: 4)
    }

    /// A control plane serving `bytes` for every artifact hash.
    static func withArtifactServer(_ bytes: [UInt8], _ body: @escaping @Sendable (String) async throws -> Void)
        async throws
    {
        let router = Router()
        router.get(RouterPath(InternalAPI.canonArtifacts + "/:sha256")) { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        try await Application(router: router).test(.live) { client in
            try await body("http://127.0.0.1:\(client.port!)")
        }
    }

    static func library(url: String, store: ConfigStore, directory: String) -> CanonLibrary {
        CanonLibrary(
            directory: directory, configuration: store,
            control: ControlPlaneClient(
                settings: .init(url: url, nodeToken: "t", timeout: .seconds(5)), httpClient: .shared),
            logger: Logger(label: "test.canon"))
    }

    @Test("a tenant's overlay that is named but not loaded is 503; once fetched and verified it is served")
    func loadsAndVerifies() async throws {
        let bytes = Self.artifact()
        let sha = bytes.withUnsafeBytes { CanonIndex.sha256($0) }
        var overlaid = ConfigFixtures.tenant()
        overlaid.canon = CanonReference(
            versionID: UUID(), label: "acme-v1", sha256: sha, byteCount: UInt64(bytes.count))
        let tenant = overlaid
        let plain = ConfigFixtures.tenant(slug: "plain")
        let store = ConfigStore(
            ConfigState(snapshot: ConfigFixtures.snapshot(version: 1, tenants: [tenant, plain], keys: [])))
        let directory = ConfigFixtures.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // The control plane sends bytes that do not hash to the name: refused, nothing kept.
        try await Self.withArtifactServer(bytes + [0]) { url in
            let library = Self.library(url: url, store: store, directory: directory)
            await library.synchronize()
            #expect(library.current.overlays.isEmpty)
            #expect(!library.isCurrent(for: store.current!))
            #expect(throws: Problem.canonNotReady) { try library.layers(for: tenant) }
            let plainLayers = try library.layers(for: plain)
            #expect(plainLayers.isEmpty)  // no canon named: answered "not covered"
            #expect(!FileManager.default.fileExists(atPath: directory + "/\(sha).zcan"))
        }
        try await Self.withArtifactServer(bytes) { url in
            let library = Self.library(url: url, store: store, directory: directory)
            await library.synchronize()
            #expect(library.isCurrent(for: store.current!))
            let layers = try library.layers(for: tenant)
            #expect(layers.map(\.index.label) == ["acme-v1"])
            #expect(FileManager.default.fileExists(atPath: directory + "/\(sha).zcan"))
        }
        // A new node process finds it on disk without the control plane.
        let offline = Self.library(url: "http://127.0.0.1:1", store: store, directory: directory)
        await offline.synchronize()
        #expect(offline.current.overlays[tenant.id]?.sha256 == sha)
    }
}
