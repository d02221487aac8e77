import Logging
import NIOCore
import NIOPosix

/// One command on its way out: the formatted bytes, the promise for its reply, and its deadline.
struct RedisRequest: Sendable {
    var payload: ByteBuffer
    var promise: EventLoopPromise<RESPValue>
    var deadline: NIODeadline
}

/// Matches replies to requests in order (RESP is strictly ordered), so any number of commands
/// can be in flight on one connection: that is pipelining.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>
        var timeout: Scheduled<Void>?
    }

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var isOpen = true

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        guard self.isOpen else {
            request.promise.fail(RedisError.notSent)
            promise?.fail(RedisError.notSent)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = context.eventLoop.scheduleTask(deadline: request.deadline) {
            let (handler, context) = loopBound.value
            handler.failAll(RedisError.timeout, context: context)
        }
        self.pending.append(Pending(promise: request.promise, timeout: timeout))
        context.write(self.wrapOutboundOut(request.payload), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = self.unwrapInboundIn(data)
        guard let next = self.pending.popFirst() else {
            // A reply nobody asked for: the stream is out of step and cannot be trusted.
            self.failAll(RedisError.protocolError("unexpected reply"), context: context)
            return
        }
        next.timeout?.cancel()
        next.promise.succeed(value)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isOpen = false
        self.drain(RedisError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.failAll(error as? RedisError ?? RedisError.protocolError("\(error)"), context: context)
    }

    /// Fails every request in flight and closes: after a timeout or a protocol error, later
    /// replies on this connection would be matched to the wrong requests.
    private func failAll(_ error: RedisError, context: ChannelHandlerContext) {
        self.isOpen = false
        self.drain(error)
        context.close(promise: nil)
    }

    private func drain(_ error: RedisError) {
        while let next = self.pending.popFirst() {
            next.timeout?.cancel()
            next.promise.fail(error)
        }
    }
}

/// One TCP connection to Redis, authenticated and on the configured database.
public final class RedisConnection: Sendable {
    let channel: any Channel
    let commandTimeout: TimeAmount

    init(channel: any Channel, commandTimeout: TimeAmount) {
        self.channel = channel
        self.commandTimeout = commandTimeout
    }

    public static func connect(
        configuration: RedisConfiguration,
        eventLoop: any EventLoop,
        logger: Logger
    ) async throws -> RedisConnection {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPReplyDecoder()))
                    try channel.pipeline.syncOperations.addHandler(RedisCommandHandler())
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw RedisError.unavailable("connect to \(configuration.host):\(configuration.port) failed: \(error)")
        }
        let connection = RedisConnection(channel: channel, commandTimeout: configuration.commandTimeout)
        do {
            if let password = configuration.password {
                var auth: [RedisArgument] = ["AUTH"]
                if let username = configuration.username { auth.append(.string(username)) }
                auth.append(.string(password))
                let reply = try await connection.send(auth)
                if case .error(let message) = reply {
                    throw RedisError.unavailable("authentication failed: \(message)")
                }
            }
            if configuration.database != 0 {
                let reply = try await connection.send(["SELECT", .int(configuration.database)])
                if case .error(let message) = reply {
                    throw RedisError.unavailable("SELECT \(configuration.database) failed: \(message)")
                }
            }
        } catch {
            await connection.close()
            throw error
        }
        logger.debug("redis connection open", metadata: ["redis": "\(configuration.host):\(configuration.port)"])
        return connection
    }

    public var isActive: Bool { self.channel.isActive }

    /// Sends one command and returns its reply; an error reply comes back as `.error`, not thrown.
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        let payload = try RESPCommandFormatter.format(arguments)
        let promise = self.channel.eventLoop.makePromise(of: RESPValue.self)
        let request = RedisRequest(payload: payload, promise: promise, deadline: .now() + self.commandTimeout)
        self.channel.writeAndFlush(request, promise: Self.failOnWriteError(promise, eventLoop: self.channel.eventLoop))
        return try await promise.futureResult.get()
    }

    /// Sends several commands in one write and returns their replies in order.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let deadline = NIODeadline.now() + self.commandTimeout
        var futures: [EventLoopFuture<RESPValue>] = []
        futures.reserveCapacity(commands.count)
        for command in commands {
            let payload = try RESPCommandFormatter.format(command)
            let promise = self.channel.eventLoop.makePromise(of: RESPValue.self)
            self.channel.write(
                RedisRequest(payload: payload, promise: promise, deadline: deadline),
                promise: Self.failOnWriteError(promise, eventLoop: self.channel.eventLoop)
            )
            futures.append(promise.futureResult)
        }
        self.channel.flush()
        var replies: [RESPValue] = []
        replies.reserveCapacity(futures.count)
        for future in futures { replies.append(try await future.get()) }
        return replies
    }

    /// A write that fails never reached Redis (for example: the channel closed and its handlers
    /// were already removed), so no reply will come; the caller learns it was not sent. If the
    /// reply promise was completed already, this is a no-op.
    private static func failOnWriteError(
        _ reply: EventLoopPromise<RESPValue>,
        eventLoop: any EventLoop
    ) -> EventLoopPromise<Void> {
        let written = eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in reply.fail(RedisError.notSent) }
        return written
    }

    public func close() async {
        try? await self.channel.close()
    }
}
