import Foundation

/// What the thin executables share: run the server, and turn a start-up failure into one line on
/// standard error and an exit code (78, EX_CONFIG, for bad configuration; 1 otherwise).
public enum ServerEntryPoint {
    public static func run(_ name: String, _ body: () async throws -> Void) async -> Never {
        do {
            try await body()
            exit(0)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
            exit(78)
        } catch {
            FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
            exit(1)
        }
    }
}
