import Common
import DataPlane
import Foundation
import Hummingbird
import Logging

// Thin entry point: read configuration, install logging, run the node until SIGTERM.
do {
    let reader = try await ConfigurationLoader.reader(defaults: DataPlaneConfiguration.defaults)
    let configuration = try DataPlaneConfiguration(reader: reader)
    LoggingSystem.bootstrapJSON(level: configuration.server.logLevel)
    _ = PrometheusMetrics.registry
    let app = try await buildApplication(configuration: configuration)
    try await app.runService()
} catch let error as ConfigurationError {
    FileHandle.standardError.write(Data("zaas-data: \(error)\n".utf8))
    exit(78)  // EX_CONFIG
} catch {
    FileHandle.standardError.write(Data("zaas-data: \(error)\n".utf8))
    exit(1)
}
