import Foundation
import Metrics
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// The process's own figures under the names Prometheus's client libraries use, read from
/// `/proc/self` every `interval`: `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
/// `process_open_fds` and `process_start_time_seconds` (the dashboard's node memory; docs/deployment.md).
/// Where there is no `/proc` (not Linux) it records nothing.
public struct ProcessMetrics: Service {
    let interval: Duration
    private let resident = Gauge(label: "process_resident_memory_bytes")
    private let virtual = Gauge(label: "process_virtual_memory_bytes")
    private let openFiles = Gauge(label: "process_open_fds")
    private let started = Gauge(label: "process_start_time_seconds")

    public init(interval: Duration = .seconds(5)) {
        self.interval = interval
    }

    public func run() async throws {
        self.started.record(Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime + Self.startOffset())
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                self.record()
                try await Task.sleep(for: self.interval)
            }
        }
    }

    /// One reading.
    public func record() {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return }
        let fields = statm.split(separator: " ").compactMap { Double($0) }
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        if fields.count >= 2 {
            self.virtual.record(fields[0] * page)
            self.resident.record(fields[1] * page)
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            self.openFiles.record(descriptors.count)
        }
    }

    /// Seconds from boot to this process's start (field 22 of `/proc/self/stat`, in clock ticks).
    private static func startOffset() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return ProcessInfo.processInfo.systemUptime }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return ProcessInfo.processInfo.systemUptime }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
