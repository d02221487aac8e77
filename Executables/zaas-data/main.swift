import DataPlane
import Hummingbird
import Logging
import Shared

// Thin entry point: read configuration, install logging, run the node until SIGTERM.
await ServerEntryPoint.run("zaas-data") {
    let reader = try await ConfigurationLoader.reader(defaults: DataPlaneConfiguration.defaults)
    let configuration = try DataPlaneConfiguration(reader: reader)
    LoggingSystem.bootstrapJSON(level: configuration.server.logLevel)
    try await buildApplication(configuration: configuration).runService()
}
