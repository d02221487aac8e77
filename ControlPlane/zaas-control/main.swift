import Common
import ControlPlane
import Foundation
import Hummingbird
import Logging

// Thin entry point: read configuration, install logging, run the application until SIGTERM.
do {
    let reader = try await ConfigurationLoader.reader(defaults: ControlPlaneConfiguration.defaults)
    let configuration = try ControlPlaneConfiguration(reader: reader)
    LoggingSystem.bootstrapJSON(level: configuration.server.logLevel)
    _ = PrometheusMetrics.registry
    let app = try await buildApplication(configuration: configuration)
    try await app.runService()
} catch let error as ConfigurationError {
    FileHandle.standardError.write(Data("zaas-control: \(error)\n".utf8))
    exit(78)  // EX_CONFIG
} catch {
    FileHandle.standardError.write(Data("zaas-control: \(error)\n".utf8))
    exit(1)
}
