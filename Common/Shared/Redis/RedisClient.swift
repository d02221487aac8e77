import Crypto
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A small pool of pipelined Redis connections.
///
/// Commands are spread round-robin over `poolSize` connections and pipelined on each, so a few
/// sockets carry any number of concurrent callers. A dead connection (Redis restarted, network
/// cut) is replaced on the next call; while Redis cannot be reached, calls fail fast for
/// `reconnectBackoff` instead of each waiting out the connect timeout. Run it as a `Service`
/// so graceful shutdown closes the sockets.
public final class RedisClient: Service, Sendable {
    private enum Slot {
        case empty
        case connecting(EventLoopFuture<RedisConnection>)
        case ready(RedisConnection)
        case backingOff(until: NIODeadline, reason: String)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var isShutdown = false
    }

    public let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state: Mutex<State>

    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.state = Mutex(State(slots: Array(repeating: .empty, count: max(1, configuration.poolSize))))
    }

    /// Sends one command; an error reply is thrown as `RedisError.server`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        let reply = try await self.withConnection { try await $0.send(arguments) }
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
    }

    /// Sends commands in one pipeline on one connection; error replies stay in place as `.error`.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await self.withConnection { try await $0.pipeline(commands) }
    }

    /// Runs a Lua script by its SHA-1 (EVALSHA); if this Redis has not seen it yet (NOSCRIPT, for
    /// example after a restart or SCRIPT FLUSH), sends the source with EVAL, which also caches it.
    @discardableResult
    public func evaluate(
        _ script: RedisScript,
        keys: [RedisArgument] = [],
        arguments: [RedisArgument] = []
    ) async throws -> RESPValue {
        let tail: [RedisArgument] = [.int(keys.count)] + keys + arguments
        return try await self.withConnection { connection in
            var reply = try await connection.send(["EVALSHA", .string(script.sha1)] + tail)
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                reply = try await connection.send(["EVAL", .string(script.source)] + tail)
            }
            if case .error(let message) = reply { throw RedisError.server(message) }
            return reply
        }
    }

    /// Round-trip time of a PING, or an error if Redis cannot be reached.
    public func ping() async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        let reply = try await self.send(["PING"])
        guard reply == .simpleString("PONG") else {
            throw RedisError.protocolError("unexpected PING reply")
        }
        return clock.now - start
    }

    /// Waits for graceful shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        await self.shutdown()
    }

    public func shutdown() async {
        let connections: [RedisConnection] = self.state.withLock { state in
            state.isShutdown = true
            let open = state.slots.compactMap { slot -> RedisConnection? in
                if case .ready(let connection) = slot { return connection }
                return nil
            }
            state.slots = state.slots.map { _ in .empty }
            return open
        }
        for connection in connections { await connection.close() }
    }

    /// Runs `body` on a live connection. A command that never left the process because its
    /// connection had just died is retried once on a fresh connection; anything else is not
    /// retried, since it may already have run.
    private func withConnection<Result: Sendable>(
        _ body: (RedisConnection) async throws -> Result
    ) async throws -> Result {
        let (index, connection) = try await self.connection()
        do {
            return try await body(connection)
        } catch RedisError.notSent {
            self.discard(connection, at: index)
            let (retryIndex, retry) = try await self.connection()
            do {
                return try await body(retry)
            } catch let error as RedisError where error == .notSent || error == .connectionClosed {
                self.discard(retry, at: retryIndex)
                throw error
            }
        } catch let error as RedisError where error == .connectionClosed || error == .timeout {
            self.discard(connection, at: index)
            throw error
        }
    }

    private enum Acquire {
        case ready(RedisConnection)
        case wait(EventLoopFuture<RedisConnection>)
        case failed(any Error)
    }

    private func connection() async throws -> (Int, RedisConnection) {
        let (index, action) = self.state.withLock { state -> (Int, Acquire) in
            guard !state.isShutdown else { return (0, .failed(RedisError.shutdown)) }
            let index = state.next
            state.next = (state.next + 1) % state.slots.count
            switch state.slots[index] {
            case .ready(let connection) where connection.isActive:
                return (index, .ready(connection))
            case .connecting(let future):
                return (index, .wait(future))
            case .backingOff(let until, let reason) where NIODeadline.now() < until:
                return (index, .failed(RedisError.unavailable(reason)))
            case .ready, .empty, .backingOff:
                let future = self.startConnecting(slot: index)
                state.slots[index] = .connecting(future)
                return (index, .wait(future))
            }
        }
        switch action {
        case .ready(let connection): return (index, connection)
        case .failed(let error): throw error
        case .wait(let future): return (index, try await future.get())
        }
    }

    /// Called with the state lock held; the future completes later and updates the slot.
    private func startConnecting(slot index: Int) -> EventLoopFuture<RedisConnection> {
        let eventLoop = self.eventLoopGroup.next()
        let promise = eventLoop.makePromise(of: RedisConnection.self)
        let configuration = self.configuration
        let logger = self.logger
        promise.completeWithTask {
            try await RedisConnection.connect(configuration: configuration, eventLoop: eventLoop, logger: logger)
        }
        promise.futureResult.whenComplete { result in
            let stale: RedisConnection? = self.state.withLock { state in
                switch result {
                case .success(let connection):
                    if state.isShutdown { return connection }
                    state.slots[index] = .ready(connection)
                case .failure(let error):
                    let reason = (error as? RedisError)?.description ?? "\(error)"
                    state.slots[index] = .backingOff(until: .now() + configuration.reconnectBackoff, reason: reason)
                    logger.warning("redis connect failed", metadata: ["error": "\(reason)"])
                }
                return nil
            }
            if let stale { Task { await stale.close() } }
        }
        return promise.futureResult
    }

    private func discard(_ connection: RedisConnection, at index: Int) {
        self.state.withLock { state in
            if case .ready(let current) = state.slots[index], current === connection {
                state.slots[index] = .empty
            }
        }
        Task { await connection.close() }
    }
}

/// A Lua script known by its SHA-1, for EVALSHA.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
