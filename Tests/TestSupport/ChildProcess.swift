import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process spawned with posix_spawn and reaped with waitpid: Foundation's Process polls a
/// run loop in `waitUntilExit`, which spins on Linux when called from a concurrency thread.
public final class ChildProcess: @unchecked Sendable {
    private let lock = NSLock()
    private var pid: pid_t?

    /// Starts `arguments[0]` with `environment` (the whole environment), output appended to `logFile`.
    public init(arguments: [String], environment: [String: String], logFile: String? = nil) throws {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
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
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of the test process goes to the child: NIO accepts sockets without
        // close-on-exec, so a child started while an in-process test server holds a connection
        // would keep that connection open after the server closes it (and likewise listening
        // sockets, database and Redis connections).
        // (glibc 2.34+; Swift does not see the declaration, which needs _GNU_SOURCE.)
        guard let closeFrom = Self.addCloseFrom else {
            throw TestEnvironment.SetupError(message: "posix_spawn_file_actions_addclosefrom_np missing (glibc < 2.34)")
        }
        _ = closeFrom(&actions, 3)
        if let logFile {
            posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, envp)
        guard status == 0 else {
            throw TestEnvironment.SetupError(message: "cannot start \(arguments[0]): errno \(status)")
        }
        self.pid = pid
    }

    deinit { self.stop() }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    public var processID: Int32? { self.lock.withLock { self.pid } }

    /// Processor time the process has used so far (user and system, its reaped children
    /// included), from /proc; nil once it has ended.
    public var processorSeconds: Double? {
        guard let pid = self.processID,
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm) ": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14 else { return nil }
        let ticks = fields[11...14].compactMap { Double($0) }.reduce(0, +)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    public var isRunning: Bool {
        self.lock.withLock {
            guard let pid = self.pid else { return false }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                self.pid = nil
                return false
            }
            return true
        }
    }

    /// SIGKILL, as a crash would.
    public func kill() {
        self.lock.withLock {
            guard let pid = self.pid else { return }
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            self.pid = nil
        }
    }

    /// SIGTERM, and SIGKILL if it has not exited within `grace`. Returns the exit status when the
    /// process exited on its own (nil when it had to be killed or was not running). Blocks the
    /// calling thread: from async code use `terminate`, which leaves the thread to other tasks.
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) -> Int32? {
        guard let pid = self.signal(SIGTERM) else { return nil }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if let exited = self.reap(pid) { return exited }
            usleep(10_000)
        }
        self.kill()
        return nil
    }

    /// `stop` for async callers: the wait for the exit is a sleep, not a blocked thread (the
    /// test process's concurrency pool has as many threads as cores, and a process shutting
    /// down can take seconds).
    @discardableResult
    public func terminate(grace: Duration = .seconds(5)) async -> Int32? {
        guard let pid = self.signal(SIGTERM) else { return nil }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if let exited = self.reap(pid) { return exited }
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.kill()
        return nil
    }

    /// Sends `signal` to the running process; its pid, nil when none is running.
    private func signal(_ signal: Int32) -> pid_t? {
        self.lock.withLock {
            guard let pid = self.pid else { return nil }
            Glibc.kill(pid, signal)
            return pid
        }
    }

    /// nil while `pid` runs; once it has exited, its exit status (`.some(nil)` when a signal
    /// ended it).
    private func reap(_ pid: pid_t) -> Int32?? {
        self.lock.withLock {
            guard self.pid == pid else { return .some(nil) }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            self.pid = nil
            return .some((status & 0x7f) == 0 ? (status >> 8) & 0xff : nil)
        }
    }
}
