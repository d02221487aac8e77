import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Shared

/// A `zaas-control` or `zaas-data` executable running as a real process, as operators run it.
public final class ServerProcess: @unchecked Sendable {
    public let name: String
    public let port: Int
    /// The metrics listener's port (`metrics.port`), a free one of its own.
    public let metricsPort: Int
    public var environment: [String: String]
    public let logFile: String
    private let binary: String
    private var process: ChildProcess?

    /// The folder holding the executables `swift build` made next to the test bundle
    /// (override with `ZAAS_BIN`).
    public static var binaryDirectory: String {
        if let directory = ProcessInfo.processInfo.environment["ZAAS_BIN"], !directory.isEmpty { return directory }
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// `settings` in dotted form (`http.port`), turned into `ZAAS_*` variables.
    public init(name: String, executable: String, settings: [String: String], port: Int, logDirectory: String) throws {
        self.name = name
        self.port = port
        self.metricsPort = try RedisServerProcess.freePort()
        self.binary = Self.binaryDirectory + "/" + executable
        guard FileManager.default.isExecutableFile(atPath: self.binary) else {
            throw TestEnvironment.SetupError(message: "\(self.binary) missing: run `swift build --build-tests` first")
        }
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        for (key, value) in settings { environment[ConfigurationError.environmentName(key)] = value }
        environment["ZAAS_HTTP_PORT"] = String(port)
        environment["ZAAS_HTTP_HOST"] = "127.0.0.1"
        environment["ZAAS_METRICS_PORT"] = String(self.metricsPort)
        self.environment = environment
        self.logFile = logDirectory + "/\(name).log"
    }

    deinit { self.process?.stop() }

    public var baseURL: String { "http://127.0.0.1:\(self.port)" }
    /// `GET /metrics` (the metrics listener, not the public port).
    public var metricsURL: String { "http://127.0.0.1:\(self.metricsPort)/metrics" }
    public var isRunning: Bool { self.process?.isRunning ?? false }

    /// Processor time the server has used so far, from /proc.
    public var processorSeconds: Double? { self.process?.processorSeconds }

    /// Resident and peak resident memory in KiB, from /proc.
    public var memory: (residentKiB: Int, peakKiB: Int)? {
        guard let pid = self.process?.processID,
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        else { return nil }
        func field(_ name: String) -> Int? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else {
                return nil
            }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        guard let resident = field("VmRSS"), let peak = field("VmHWM") else { return nil }
        return (resident, peak)
    }

    /// Starts the process and waits until it accepts connections.
    /// Starts the binary and waits until it listens. A start that fails because the port is
    /// taken for a moment (a restart while the old socket closes) is retried on the same port.
    public func start(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        var attempts = 0
        while true {
            attempts += 1
            let logged = self.log().utf8.count
            self.process = try ChildProcess(
                arguments: [self.binary], environment: self.environment, logFile: self.logFile)
            while ContinuousClock.now < deadline {
                if RedisServerProcess.canConnect(port: self.port) { return }
                guard self.process?.isRunning == true else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let output = String(self.log().utf8.dropFirst(logged)) ?? ""
            let portTaken = output.contains("Address already in use") || output.contains("EADDRINUSE")
            guard portTaken, attempts < 20, ContinuousClock.now < deadline else {
                let why = self.process?.isRunning == true ? "did not listen on \(self.port)" : "exited at start"
                throw TestEnvironment.SetupError(message: "\(self.name) \(why):\n\(self.logTail())")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    public func kill() { self.process?.kill() }

    @discardableResult
    public func stop() -> Int32? { self.process?.stop() }

    /// `stop` without holding a thread (see `ChildProcess.terminate`).
    @discardableResult
    public func terminate() async -> Int32? { await self.process?.terminate() }

    public func log() -> String { (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? "" }

    public func logTail(_ lines: Int = 30) -> String {
        self.log().split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// Minimal JSON-over-HTTP for tests that talk to real processes.
public enum TestHTTP {
    /// The client `send` uses: `HTTPClient.shared` unless a benchmark binds `benchmarkClient`
    /// (`TestHTTP.$client.withValue(TestHTTP.benchmarkClient) { … }`; child tasks inherit it).
    @TaskLocal public static var client: HTTPClient = .shared

    /// A client whose pool opens a connection for every concurrent caller. The shared client
    /// opens at most 8 to a host and queues the rest, so "16 concurrent clients" would be 8
    /// connections to the server with 8 callers waiting in the client.
    public static let benchmarkClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    public struct Reply: Sendable {
        public let status: Int
        public let headers: [String: String]
        public let body: [UInt8]

        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(self.body))) as? [String: Any]
        }
        public var text: String { String(decoding: self.body, as: UTF8.self) }
    }

    public static func send(
        _ method: String = "GET",
        _ url: String,
        bearer: String? = nil,
        json: String? = nil,
        headers: [String: String] = [:],
        timeout: Duration = .seconds(10)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let (seconds, attoseconds) = timeout.components
        let response = try await Self.client.execute(
            request, timeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        let body = try await response.body.collect(upTo: 64 << 20)
        var replyHeaders: [String: String] = [:]
        for header in response.headers { replyHeaders[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), headers: replyHeaders, body: Array(body.readableBytesView))
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; returns how long it took.
    public static func waitUntil(
        timeout: Duration, _ condition: () async throws -> Bool
    ) async throws -> Duration? {
        let clock = ContinuousClock()
        let start = clock.now
        while clock.now - start < timeout {
            if try await condition() { return clock.now - start }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try await condition() ? clock.now - start : nil
    }
}

extension TestHTTP {
    /// `send`, but given up after `timeout` without waiting for the request to notice: for a
    /// server killed mid-request, where a request the client still holds must not hold the test.
    /// nil when there was no answer in time (or the connection failed).
    public static func sendAbandoningAfter(
        _ timeout: Duration, _ method: String = "GET", _ url: String, bearer: String? = nil, json: String? = nil
    ) async -> Reply? {
        let request = Task { try? await TestHTTP.send(method, url, bearer: bearer, json: json, timeout: timeout) }
        defer { request.cancel() }
        return await result(of: request, within: timeout + .seconds(1)) ?? nil
    }
}

extension TestHTTP {
    /// One server-sent event: its `event:` name (`message` when absent) and its `data:` lines joined.
    public struct Event: Sendable, Equatable {
        public let name: String
        public let data: String

        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(self.data.utf8))) as? [String: Any]
        }
    }

    /// The events of a `text/event-stream` body; comments (`: keep-alive`) are not events.
    public static func events(_ body: [UInt8]) -> [Event] {
        String(decoding: body, as: UTF8.self).components(separatedBy: "\n\n").compactMap { block in
            var name = "message"
            var data: [String] = []
            for line in block.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix(":") {
                if line.hasPrefix("event:") { name = line.dropFirst(6).trimmingCharacters(in: .whitespaces) }
                if line.hasPrefix("data:") { data.append(String(line.dropFirst(5).drop { $0 == " " })) }
            }
            return data.isEmpty ? nil : Event(name: name, data: data.joined(separator: "\n"))
        }
    }

    /// POSTs `json` asking for an event stream, reads events until `stop` holds for one, then
    /// closes the connection (a client that leaves mid-answer). The events read.
    public static func streamThenLeave(
        _ url: String, bearer: String, json: String, timeout: Duration = .seconds(30),
        stop: @escaping @Sendable (Event) -> Bool
    ) async throws -> [Event] {
        let reading = Task {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
            request.headers.add(name: "Accept", value: "text/event-stream")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            var bytes: [UInt8] = []
            for try await chunk in response.body {
                bytes += chunk.readableBytesView
                let events = Self.events(bytes)
                // Only whole events count: the body ends with the blank line that closes one.
                if bytes.suffix(2) == [10, 10], let last = events.last, stop(last) { return events }
            }
            return Self.events(bytes)
        }
        defer { reading.cancel() }
        let waiting = Task { () -> Result<[Event], any Error> in
            do { return .success(try await reading.value) } catch { return .failure(error) }
        }
        guard let outcome = await result(of: waiting, within: timeout) else {
            throw TestEnvironment.SetupError(message: "no event matched within \(timeout)")
        }
        return try outcome.get()
    }
}
