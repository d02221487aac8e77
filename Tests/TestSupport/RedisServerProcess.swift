import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A private redis-server for tests that stop and restart it, so they never disturb the shared one.
public final class RedisServerProcess: @unchecked Sendable {
    public let port: Int
    private let directory: URL
    private var process: ChildProcess?

    public init() throws {
        self.port = try Self.freePort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "zaas-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    public func start() async throws {
        let arguments = [
            "/usr/bin/redis-server", "--port", String(self.port), "--bind", "127.0.0.1",
            "--dir", self.directory.path, "--appendonly", "yes", "--save", "", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", self.directory.appendingPathComponent("redis.log").path,
        ]
        self.process = try ChildProcess(arguments: arguments, environment: ProcessInfo.processInfo.environment)
        // Ready when it accepts connections.
        for _ in 0..<100 {
            if Self.canConnect(port: self.port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestEnvironment.SetupError(message: "redis-server did not start on port \(self.port)")
    }

    /// Kills the server the hard way (SIGKILL), as a crash would.
    public func kill() async throws {
        self.process?.kill()
        self.process = nil
    }

    /// SIGTERM, and SIGKILL if it has not exited within five seconds.
    public func stop() {
        self.process?.stop()
        self.process = nil
    }

    public static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A port nothing listens on right now (bind to 0, read it, release it).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw TestEnvironment.SetupError(message: "cannot bind a free port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
