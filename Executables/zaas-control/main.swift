import ControlPlane
import Hummingbird
import Logging
import Shared

// Thin entry point: read configuration, install logging, run the application until SIGTERM.
await ServerEntryPoint.run("zaas-control") {
    let reader = try await ConfigurationLoader.reader(defaults: ControlPlaneConfiguration.defaults)
    let configuration = try ControlPlaneConfiguration(reader: reader)
    LoggingSystem.bootstrapJSON(level: configuration.server.logLevel)
    try await buildApplication(configuration: configuration).runService()
}
