import Configuration
import Foundation
import Logging
import NIOCore
import Testing

@testable import Shared

@Suite("configuration: defaults < file < environment")
struct ConfigurationTests {
    @Test("the environment overrides the file, which overrides the defaults")
    func layering() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("zaas-config-\(UUID()).json")
        try Data(#"{"http": {"port": 9100, "host": "0.0.0.0"}, "log": {"level": "debug"}}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let reader = try await ConfigurationLoader.reader(
            defaults: ServerSettings.defaults(port: 8000).merging(RedisConfiguration.defaults) { $1 },
            environment: ["ZAAS_CONFIG_FILE": file.path, "ZAAS_HTTP_PORT": "9200"]
        )
        let settings = try ServerSettings(reader: reader)
        #expect(settings.port == 9200)  // environment
        #expect(settings.host == "0.0.0.0")  // file
        #expect(settings.logLevel == .debug)  // file
        #expect(reader.optionalSetting("redis.pool_size") == "4")  // default
    }

    @Test("a malformed value is an error naming the setting and its variable, not a silent default")
    func invalidValues() async throws {
        let reader = try await ConfigurationLoader.reader(
            defaults: ServerSettings.defaults(port: 8000),
            environment: ["ZAAS_HTTP_PORT": "eighty"]
        )
        #expect(
            throws: ConfigurationError.invalid(key: "http.port", value: "eighty", expected: "an integer in 0...65535")
        ) {
            try ServerSettings(reader: reader)
        }
        let description = ConfigurationError.invalid(key: "http.port", value: "eighty", expected: "x").description
        #expect(description.contains("ZAAS_HTTP_PORT"))

        let badLevel = try await ConfigurationLoader.reader(
            defaults: ServerSettings.defaults(port: 8000),
            environment: ["ZAAS_LOG_LEVEL": "loud"]
        )
        #expect(throws: ConfigurationError.self) { try ServerSettings(reader: badLevel) }
    }

    @Test("a missing or unparsable config file is a clear error")
    func badFile() async throws {
        await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.reader(
                defaults: [:], environment: ["ZAAS_CONFIG_FILE": "/nonexistent/zaas.json"])
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("zaas-bad-\(UUID()).json")
        try Data("{ not json".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        await #expect(throws: ConfigurationError.self) {
            _ = try await ConfigurationLoader.reader(defaults: [:], environment: ["ZAAS_CONFIG_FILE": file.path])
        }
    }

    @Test("Redis settings are read and range-checked")
    func redisSettings() async throws {
        let reader = try await ConfigurationLoader.reader(
            defaults: RedisConfiguration.defaults,
            environment: ["ZAAS_REDIS_PORT": "7000", "ZAAS_REDIS_PASSWORD": "s3cret"]
        )
        let redis = try RedisConfiguration(reader: reader)
        #expect(redis.port == 7000)
        #expect(redis.password == "s3cret")
        #expect(redis.commandTimeout == .milliseconds(500))
        let bad = try await ConfigurationLoader.reader(
            defaults: RedisConfiguration.defaults,
            environment: ["ZAAS_REDIS_POOL_SIZE": "0"]
        )
        #expect(throws: ConfigurationError.self) { try RedisConfiguration(reader: bad) }
    }
}
