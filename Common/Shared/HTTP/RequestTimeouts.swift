import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Cuts slow clients off: a new connection's first request head must arrive within
/// `headTimeout`, each body within `bodyTimeout` of its head, and the next head within
/// `idleTimeout` of the previous response (an idle keep-alive connection ends then). A client
/// that sends one header byte a second, or a body that never ends, holds a connection for
/// seconds, not forever. The connection is closed without an answer: nothing useful can be said
/// to a client that is not sending.
///
/// The idle timeout is longer than the head timeout (75 s by default, as nginx): HTTP clients
/// keep idle connections pooled for up to a minute, and a server that closes them sooner races
/// the client's next request on them.
final class RequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let headTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    /// When the connection is cut unless it moves on: nil while the server works on an answer.
    private var deadline: NIODeadline?
    /// The one timer, and when it fires. A deadline moved later leaves it as it is (when it fires
    /// it reads the deadline and waits again for what is left), so a busy keep-alive connection
    /// does not schedule and cancel timers on every request; only a deadline earlier than the
    /// timer replaces it.
    private var timer: (task: Scheduled<Void>, firesAt: NIODeadline)?
    /// Requests read whose response has not ended yet (no head deadline meanwhile).
    private var inFlight = 0

    init(headTimeout: TimeAmount, bodyTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context, after: self.headTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context, after: self.headTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head:
            self.inFlight += 1
            self.arm(context, after: self.bodyTimeout)
        case .body:
            break
        case .end:
            // The body is in: no deadline while the server works on the answer. (The answer may
            // already have ended, when the handler did not wait for the body: then the idle
            // deadline for the next request stays.)
            if self.inFlight > 0 { self.deadline = nil }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) {
            self.inFlight = max(0, self.inFlight - 1)
            if self.inFlight == 0 { self.arm(context, after: self.idleTimeout) }
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, after timeout: TimeAmount) {
        let deadline = NIODeadline.now() + timeout
        self.deadline = deadline
        if let timer = self.timer {
            if timer.firesAt <= deadline { return }
            timer.task.cancel()
        }
        self.schedule(context, at: deadline)
    }

    private func schedule(_ context: ChannelHandlerContext, at time: NIODeadline) {
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: time) {
            self.timer = nil
            guard let deadline = self.deadline else { return }
            if deadline <= .now() {
                context.channel.close(promise: nil)
            } else {
                self.schedule(context, at: deadline)
            }
        }
        self.timer = (task, time)
    }

    private func stop() {
        self.deadline = nil
        self.timer?.task.cancel()
        self.timer = nil
    }
}

extension ServerSettings {
    /// The HTTP/1.1 server both planes run: slow clients cut off (`RequestTimeoutHandler`).
    public var serverBuilder: HTTPServerBuilder {
        let (head, body, idle) = (
            TimeAmount(self.headTimeout), TimeAmount(self.bodyTimeout), TimeAmount(self.idleTimeout)
        )
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [
                    RequestTimeoutHandler(headTimeout: head, bodyTimeout: body, idleTimeout: idle)
                ]))
    }

    /// Where the server listens, and how many connections it holds at once (past that, new
    /// connections wait in the kernel's backlog until one closes).
    public func applicationConfiguration(serverName: String) -> ApplicationConfiguration {
        ApplicationConfiguration(
            address: .hostname(self.host, port: self.port), serverName: serverName,
            availableConnectionsDelegate: MaximumAvailableConnections(self.maximumConnections))
    }
}
