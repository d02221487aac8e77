import Embeddings
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing
import Yams

@testable import ControlPlane
@testable import DataPlane

@Suite("docs/openapi.yaml is the contract")
struct OpenAPITests {
    static func loadSpec() throws -> [String: Any] {
        let url = TestEnvironment.repositoryRoot.appendingPathComponent("docs/openapi.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    @Test("the file parses as OpenAPI 3.1 and every operation lists its responses, errors as problem+json")
    func parses() throws {
        let spec = try Self.loadSpec()
        #expect((spec["openapi"] as? String)?.hasPrefix("3.1") == true)
        let paths = try #require(spec["paths"] as? [String: [String: Any]])
        #expect(paths.keys.contains("/api/v1/query"))
        for (path, operations) in paths {
            for (method, value) in operations where ["get", "post", "put", "patch", "delete"].contains(method) {
                let operation = try #require(value as? [String: Any], "\(method) \(path)")
                let responses = try #require(operation["responses"] as? [String: Any], "\(method) \(path)")
                #expect(!responses.isEmpty)
                for (code, response) in responses where code.hasPrefix("4") || code.hasPrefix("5") {
                    let resolved = try Self.resolve(response, in: spec)
                    let content = try #require(resolved["content"] as? [String: Any], "\(method) \(path) \(code)")
                    #expect(content.keys.contains("application/problem+json"), "\(method) \(path) \(code)")
                }
            }
        }
    }

    /// Follows a `$ref: '#/components/…'` to its target.
    static func resolve(_ value: Any, in spec: [String: Any]) throws -> [String: Any] {
        var object = try #require(value as? [String: Any])
        while let reference = object["$ref"] as? String {
            var target: Any = spec
            for part in reference.dropFirst(2).split(separator: "/") {
                target = try #require((target as? [String: Any])?[String(part)], "unresolvable \(reference)")
            }
            object = try #require(target as? [String: Any])
        }
        return object
    }

    @Test("every route either server registers is described")
    func routesAreDescribed() async throws {
        let spec = try Self.loadSpec()
        let paths = try #require(spec["paths"] as? [String: [String: Any]])
        // Hummingbird prints captures as OpenAPI does: `/admin/v1/keys/{id}`.
        var described: Set<String> = []
        for (path, operations) in paths {
            for method in operations.keys { described.insert("\(method.uppercased()) \(path)") }
        }

        let logger = Logger(label: "test.openapi")
        let signingKey = ConfigSigningKey()
        let data = try await DataPlaneConfiguration(
            reader: ConfigurationLoader.reader(
                defaults: DataPlaneConfiguration.defaults,
                environment: [
                    "ZAAS_CONFIG_PUBLIC_KEY": signingKey.verificationKey.hex,
                    "ZAAS_KEYS_PEPPER": String(repeating: "ab", count: 32),
                    "ZAAS_EMBEDDINGS_MODEL_DIR": TestEnvironment.modelDirectory,
                    "ZAAS_NODES_TOKEN": TestEnvironment.shared.nodeToken(for: "openapi"),
                ])
        )
        let node = try DataPlaneNode(configuration: data, logger: logger)
        defer { node.embedder.shutdown() }
        let dataRouter = DataPlane.buildRouter(node: node)
        try await node.control.shutdown()
        try await node.inference.shutdown()
        let control = try await ControlPlaneConfiguration(
            reader: ConfigurationLoader.reader(
                defaults: ControlPlaneConfiguration.defaults,
                environment: [
                    "ZAAS_POSTGRES_PASSWORD": "unused", "ZAAS_KEYS_PEPPER": String(repeating: "ab", count: 32),
                    "ZAAS_CONFIG_SIGNING_KEY": signingKey.hexSeed,
                ]
            )
        )
        let postgres = PostgresClient(configuration: control.database.applicationClient)
        let controlRouter = try ControlPlane.buildRouter(
            postgres: postgres,
            auth: try await makeAuthService(postgres: postgres, configuration: control),
            distribution: ConfigDistribution(postgres: postgres, settings: control.distribution, logger: logger),
            builder: CanonBuildWorker(
                postgres: postgres, modelDirectory: TestEnvironment.modelDirectory, threads: 1, logger: logger),
            configuration: control
        )
        let registered =
            dataRouter.routes.map { "\($0.method) \($0.path)" } + controlRouter.routes.map { "\($0.method) \($0.path)" }
        #expect(registered.count >= 4)
        for route in registered {
            #expect(described.contains(route), "\(route) is registered but not in docs/openapi.yaml")
        }
    }
}
