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

    /// Starts the server and waits until it accepts connections. When the port is taken for a
    /// moment (by a client socket, or the previous server still closing), the start is retried
    /// on the same port: clients are configured for it.
    public func start() async throws {
        let arguments = [
            "/usr/bin/redis-server", "--port", String(self.port), "--bind", "127.0.0.1",
            // fsync every write: tests kill this server with SIGKILL and count on what it had
            // acknowledged (with the default `everysec` the last second can be lost, a real
            // Redis trade-off, but not what these tests are about).
            "--dir", self.directory.path, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning", "--logfile", self.directory.appendingPathComponent("redis.log").path,
        ]
        for _ in 0..<20 {
            let process = try ChildProcess(arguments: arguments, environment: ProcessInfo.processInfo.environment)
            self.process = process
            // Ready when it accepts connections; a server that exits (port in use) is started again.
            for _ in 0..<100 {
                if Self.canConnect(port: self.port) { return }
                if !process.isRunning { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            process.stop()
            self.process = nil
            try await Task.sleep(for: .milliseconds(250))
        }
        let log = (try? String(contentsOf: self.directory.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
        throw TestEnvironment.SetupError(
            message: "redis-server did not start on port \(self.port): \(log.suffix(500))")
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

    /// A port nothing listens on right now, outside the kernel's range for outgoing connections
    /// (so no client socket of a parallel test can take it between now and the bind), and never
    /// handed out twice in this process.
    public static func freePort() throws -> Int {
        let ephemeralStart = Self.ephemeralRangeStart()
        for _ in 0..<500 {
            let candidate = Int.random(in: 10_000..<max(10_001, min(ephemeralStart, 65_536)))
            guard Self.claim(candidate) else { continue }
            if Self.canBind(port: candidate) { return candidate }
        }
        throw TestEnvironment.SetupError(message: "cannot find a free port below \(ephemeralStart)")
    }

    private static let claimedLock = NSLock()
    nonisolated(unsafe) private static var claimed: Set<Int> = []

    private static func claim(_ port: Int) -> Bool {
        claimedLock.withLock { claimed.insert(port).inserted }
    }

    /// The first port of `net.ipv4.ip_local_port_range` (32768 when it cannot be read).
    static func ephemeralRangeStart() -> Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32_768
    }

    static func canBind(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
