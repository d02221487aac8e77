import Logging
import NIOCore
import TestSupport
import Testing

@testable import Shared

@Suite("Redis client over hiredis, against a real redis-server")
struct RedisClientTests {
    let logger = Logger(label: "test.redis")

    func withClient<Result: Sendable>(
        _ configuration: RedisConfiguration = TestEnvironment.shared.redis,
        _ body: (RedisClient) async throws -> Result
    ) async throws -> Result {
        let client = RedisClient(configuration: configuration, logger: self.logger)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    func key(_ name: String = #function) -> RedisArgument {
        .string("zaas:test:{\(name)}:\(UInt64.random(in: 0...UInt64.max))")
    }

    @Test("binary-safe values round-trip, missing keys are nil")
    func binarySafeValues() async throws {
        try await withClient { redis in
            let key = self.key()
            let bytes = (0...255).map { UInt8($0) } + Array("\r\n$-1\r\n*2\r\n".utf8) + [0, 0]
            #expect(try await redis.send(["SET", key, .bytes(bytes), "PX", "60000"]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", key]) == .bulkString(bytes))
            #expect(try await redis.send(["GET", self.key()]) == .null)
            #expect(try await redis.send(["SET", key, .bytes([])]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", key]) == .bulkString([]))
            #expect(try await redis.send(["STRLEN", key]) == .integer(0))
            try await redis.send(["DEL", key])
        }
    }

    @Test("arrays, nested arrays and integers decode")
    func arraysAndIntegers() async throws {
        try await withClient { redis in
            let key = self.key()
            #expect(try await redis.send(["RPUSH", key, "a", .bytes([0, 1]), ""]) == .integer(3))
            #expect(
                try await redis.send(["LRANGE", key, 0, -1])
                    == .array([.bulkString(Array("a".utf8)), .bulkString([0, 1]), .bulkString([])])
            )
            #expect(try await redis.send(["LRANGE", self.key(), 0, -1]) == .array([]))
            let nested = RedisScript("return {1, {'two', {3}}, redis.status_reply('FINE'), false}")
            #expect(
                try await redis.evaluate(nested)
                    == .array([
                        .integer(1), .array([.bulkString(Array("two".utf8)), .array([.integer(3)])]),
                        .simpleString("FINE"), .null,
                    ])
            )
            try await redis.send(["DEL", key])
        }
    }

    @Test("error replies throw from send and stay in place in a pipeline")
    func errorReplies() async throws {
        try await withClient { redis in
            let key = self.key()
            try await redis.send(["SET", key, "not a number", "PX", "60000"])
            await #expect(throws: RedisError.server("ERR value is not an integer or out of range")) {
                try await redis.send(["INCR", key])
            }
            await #expect(throws: RedisError.self) { try await redis.send(["NOSUCHCOMMAND"]) }
            let replies = try await redis.pipeline([["INCR", key], ["GET", key], ["LPUSH", key, "x"]])
            #expect(replies.count == 3)
            guard case .error(let first) = replies[0], case .error(let third) = replies[2] else {
                Issue.record("expected error replies, got \(replies)")
                return
            }
            #expect(first.hasPrefix("ERR"))
            #expect(third.hasPrefix("WRONGTYPE"))
            #expect(replies[1] == .bulkString(Array("not a number".utf8)))
            // The connection is still usable afterwards.
            #expect(try await redis.send(["PING"]) == .simpleString("PONG"))
            try await redis.send(["DEL", key])
        }
    }

    @Test("a pipeline of 1000 commands returns replies in order; concurrent callers share connections")
    func pipelining() async throws {
        try await withClient { redis in
            let key = self.key()
            let replies = try await redis.pipeline((0..<1000).map { _ in ["INCR", key] })
            #expect(replies == (1...1000).map { RESPValue.integer(Int64($0)) })

            let counter = self.key()
            let results = try await withThrowingTaskGroup(of: Int64.self) { group in
                for _ in 0..<500 { group.addTask { try await redis.send(["INCR", counter]).int ?? -1 } }
                var seen: [Int64] = []
                for try await value in group { seen.append(value) }
                return seen
            }
            #expect(results.sorted() == (1...500).map { Int64($0) })
            try await redis.send(["DEL", key, counter])
        }
    }

    @Test("EVALSHA falls back to EVAL on NOSCRIPT and the script is cached afterwards")
    func evalshaFallback() async throws {
        try await withClient { redis in
            let script = RedisScript(
                "return redis.call('INCRBY', KEYS[1], ARGV[1]) + \(Int.random(in: 0...1_000_000)) * 0")
            let key = self.key()
            try await redis.send(["SCRIPT", "FLUSH"])
            #expect(try await redis.send(["SCRIPT", "EXISTS", .string(script.sha1)]) == .array([.integer(0)]))
            #expect(try await redis.evaluate(script, keys: [key], arguments: [5]) == .integer(5))
            #expect(try await redis.send(["SCRIPT", "EXISTS", .string(script.sha1)]) == .array([.integer(1)]))
            #expect(try await redis.evaluate(script, keys: [key], arguments: [2]) == .integer(7))
            await #expect(throws: RedisError.self) {
                try await redis.evaluate(RedisScript("return redis.call('NOPE')"))
            }
            try await redis.send(["DEL", key])
        }
    }

    @Test("a command with no reply within the timeout fails with .timeout and the client recovers")
    func commandTimeout() async throws {
        var configuration = TestEnvironment.shared.redis
        configuration.poolSize = 1
        configuration.commandTimeout = .milliseconds(300)
        try await withClient(configuration) { redis in
            let clock = ContinuousClock()
            let start = clock.now
            // BLPOP holds its reply for 30 s: only the client's timeout can end the wait sooner.
            // (The bound is what the server would take, not the 300 ms: connecting and AUTH on a
            // loaded CI machine have taken seconds.)
            await #expect(throws: RedisError.timeout) {
                try await redis.send(["BLPOP", self.key(), "30"])
            }
            #expect(clock.now - start < .seconds(25))
            // The timed-out connection was dropped; the next command gets a fresh one. (Retried for
            // a few seconds only because a loaded CI machine can exceed 300 ms for connect + AUTH,
            // and a failed connect makes calls fail fast for the reconnect backoff.)
            var pong: RESPValue?
            for _ in 0..<40 where pong == nil {
                pong = try? await redis.send(["PING"])
                if pong == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(pong == .simpleString("PONG"))
        }
    }

    @Test("a wrong password or a closed port is reported as unavailable")
    func unavailable() async throws {
        var wrongPassword = TestEnvironment.shared.redis
        wrongPassword.password = "not-the-password"
        _ = try await withClient(wrongPassword) { redis in
            await #expect(throws: RedisError.self) { try await redis.send(["PING"]) }
        }
        var closedPort = TestEnvironment.shared.redis
        closedPort.port = try RedisServerProcess.freePort()
        try await withClient(closedPort) { redis in
            do {
                _ = try await redis.send(["PING"])
                Issue.record("PING to a closed port succeeded")
            } catch let error as RedisError {
                guard case .unavailable = error else {
                    Issue.record("expected .unavailable, got \(error)")
                    return
                }
            }
        }
    }

    @Test("the client reconnects after redis-server is killed and restarted, without being recreated")
    func reconnectsAfterRestart() async throws {
        let server = try RedisServerProcess()
        try await server.start()
        defer { server.stop() }
        let configuration = RedisConfiguration(
            port: server.port,
            poolSize: 2,
            // Generous: the first connect can wait on a machine busy with the other suites.
            connectTimeout: .seconds(5),
            commandTimeout: .seconds(3),
            reconnectBackoff: .milliseconds(50)
        )
        try await withClient(configuration) { redis in
            #expect(try await redis.send(["SET", "k", "before"]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", "k"]) == .bulkString(Array("before".utf8)))

            try await server.kill()
            // While it is down, calls fail with a Redis error, not a crash or a hang.
            for _ in 0..<3 {
                await #expect(throws: RedisError.self) { try await redis.send(["GET", "k"]) }
            }

            try await server.start()
            var recovered = false
            for _ in 0..<50 {
                if (try? await redis.send(["PING"])) == .simpleString("PONG") {
                    recovered = true
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(recovered)
            // Every pooled connection works again.
            for _ in 0..<4 {
                #expect(try await redis.send(["SET", "k", "after"]) == .simpleString("OK"))
            }
        }
    }
}
