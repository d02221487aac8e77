import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// The process's Prometheus registry. swift-metrics can be bootstrapped once per process, so the
/// registry is created and installed on first use and shared by every application in the process
/// (tests build several).
public enum PrometheusMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Installs the registry as the process's metrics backend. Call it before creating any
    /// metric: a counter made before the bootstrap stays a no-op for good.
    public static func bootstrap() {
        _ = Self.registry
    }

    /// Text exposition format 0.0.4, which every Prometheus scraper reads.
    public static func render() -> Response {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer))
        )
    }
}

extension Router {
    /// `GET /metrics` in Prometheus text format. The registry is installed by the composition
    /// root (`PrometheusMetrics.bootstrap()`), before any metric is made.
    public func addMetricsRoute() {
        self.get("/metrics") { _, _ in PrometheusMetrics.render() }
    }
}

extension PrometheusMetrics {
    /// The metrics listener: `GET /metrics` and nothing else, on its own address (loopback by
    /// default), run as one of the server's services. Public traffic never reaches it.
    public static func server(settings: ServerSettings, serverName: String, logger: Logger) -> some Service {
        let router = Router()
        router.addMetricsRoute()
        return Application(
            router: router,
            configuration: .init(
                address: .hostname(settings.metricsHost, port: settings.metricsPort), serverName: serverName),
            logger: logger)
    }
}
