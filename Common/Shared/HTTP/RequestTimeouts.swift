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
    private var deadline: Scheduled<Void>?
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
        self.disarm()
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context, after: self.headTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.disarm()
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
            // deadline for the next request stays armed.)
            if self.inFlight > 0 { self.disarm() }
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
        self.disarm()
        let channel = context.channel
        self.deadline = context.eventLoop.scheduleTask(in: timeout) {
            channel.close(promise: nil)
        }
    }

    private func disarm() {
        self.deadline?.cancel()
        self.deadline = nil
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
