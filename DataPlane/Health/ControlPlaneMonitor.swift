import AsyncHTTPClient
import Common
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Checks in the background whether the control plane answers, so the node's health can report
/// it without a request to the control plane on every health probe.
public final class ControlPlaneMonitor: Service, Sendable {
    public enum Reachability: Sendable, Equatable, CustomStringConvertible {
        case unknown
        /// Answered its health check with 200.
        case up
        /// Answered, but reports itself unhealthy (for example its database is down).
        case unhealthy(String)
        /// Did not answer.
        case down(String)

        public var description: String {
            switch self {
            case .unknown: "unknown"
            case .up: "up"
            case .unhealthy(let why): "unhealthy: \(why)"
            case .down(let why): "down: \(why)"
            }
        }
    }

    private let url: String
    private let interval: Duration
    private let timeout: Duration
    private let httpClient: HTTPClient
    private let logger: Logger
    private let state = Mutex<Reachability>(.unknown)
    private let gauge = Gauge(label: "zaas_control_plane_up")

    public init(
        baseURL: String, interval: Duration, timeout: Duration, httpClient: HTTPClient = .shared, logger: Logger
    ) {
        self.url = baseURL + "/healthz"
        self.interval = interval
        self.timeout = timeout
        self.httpClient = httpClient
        self.logger = logger
    }

    public var reachability: Reachability { self.state.withLock { $0 } }

    public func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await self.check()
                try? await Task.sleep(for: self.interval)
            }
        } onGracefulShutdown: {
        }
    }

    /// One probe; public so a health request made before the first tick can refresh it.
    public func check() async {
        let result: Reachability
        do {
            var request = HTTPClientRequest(url: self.url)
            request.method = .GET
            let response = try await self.httpClient.execute(request, timeout: .init(self.timeout))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            result = response.status == .ok ? .up : .unhealthy("health answered \(response.status.code)")
        } catch {
            result = .down("no answer from the control plane")
        }
        let previous = self.state.withLock { state in
            defer { state = result }
            return state
        }
        self.gauge.record(result == .up ? 1 : 0)
        if previous != result {
            self.logger.notice("control plane reachability changed", metadata: ["control_plane": "\(result)"])
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
