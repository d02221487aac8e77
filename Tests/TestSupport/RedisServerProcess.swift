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
    private var pid: pid_t?

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

    /// Spawned with posix_spawn and reaped with waitpid: Foundation's Process polls a run loop
    /// in `waitUntilExit`, which spins on Linux when called from a concurrency thread.
    public func start() async throws {
        let arguments = [
            "/usr/bin/redis-server", "--port", String(self.port), "--bind", "127.0.0.1",
            "--dir", self.directory.path, "--appendonly", "yes", "--save", "", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", self.directory.appendingPathComponent("redis.log").path,
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // The spawning thread may block signals (concurrency and NIO threads do); the child must
        // not inherit that, or it would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaultSignals = sigset_t()
        sigfillset(&defaultSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let status = posix_spawn(&pid, arguments[0], nil, &attributes, &argv, environ)
        guard status == 0 else {
            throw TestEnvironment.SetupError(message: "cannot start redis-server: errno \(status)")
        }
        self.pid = pid
        // Ready when it accepts connections.
        for _ in 0..<100 {
            if Self.canConnect(port: self.port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestEnvironment.SetupError(message: "redis-server did not start on port \(self.port)")
    }

    /// Kills the server the hard way (SIGKILL), as a crash would.
    public func kill() async throws {
        guard let pid = self.pid else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        self.pid = nil
    }

    /// SIGTERM, and SIGKILL if it has not exited within five seconds.
    public func stop() {
        guard let pid = self.pid else { return }
        Glibc.kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<500 {
            if waitpid(pid, &status, WNOHANG) == pid {
                self.pid = nil
                return
            }
            usleep(10_000)
        }
        Glibc.kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        self.pid = nil
    }

    static func canConnect(port: Int) -> Bool {
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
