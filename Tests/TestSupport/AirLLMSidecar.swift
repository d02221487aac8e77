import Foundation

/// The AirLLM sidecar (infra/airllm/server.py) serving the tiny test model through AirLLM's
/// layer-by-layer inference, as `make run` starts it. Its Python environment and the model come
/// from `infra/airllm/setup.sh` (`make test` runs it first; .zaas/airllm-venv and .zaas/airllm-model
/// link to them). Each sidecar splits the checkpoint into shards of its own, in a folder removed
/// when it stops.
public final class AirLLMSidecar: @unchecked Sendable {
    /// The name it serves, and the catalog entry the tests register for it.
    public static let modelName = "zaas-tiny-llama"

    public let port: Int
    /// The base URL a catalog entry points at.
    public var baseURL: String { "http://127.0.0.1:\(self.port)/v1" }
    public var origin: String { "http://127.0.0.1:\(self.port)" }
    public let logFile: String
    private let shards: String
    private let environment: [String: String]
    private let lock = NSLock()
    private var process: ChildProcess?

    /// `maxQueue`: requests that may wait behind the running one (beyond: 429). `memoryLimitMB`:
    /// the limit it reports (its default is 90 % of the machine). `engine`: `airllm` or `standard`.
    public init(maxQueue: Int = 4, memoryLimitMB: Int? = nil, engine: String = "airllm") throws {
        let root = TestEnvironment.repositoryRoot.appendingPathComponent(".zaas")
        let python = root.appendingPathComponent("airllm-venv/bin/python").path
        let model = root.appendingPathComponent("airllm-model").path
        guard FileManager.default.isExecutableFile(atPath: python),
            FileManager.default.fileExists(atPath: model + "/config.json")
        else {
            throw TestEnvironment.SetupError(
                message: "the AirLLM sidecar's environment is missing: run bash infra/airllm/setup.sh (make test does)")
        }
        self.port = try RedisServerProcess.freePort()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zaas-airllm-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        self.shards = scratch.path
        self.logFile = scratch.appendingPathComponent("sidecar.log").path
        var environment = ProcessInfo.processInfo.environment
        environment["ZAAS_AIRLLM_MODEL_PATH"] = model
        environment["ZAAS_AIRLLM_MODEL_NAME"] = Self.modelName
        environment["ZAAS_AIRLLM_PORT"] = String(self.port)
        environment["ZAAS_AIRLLM_SHARDS_DIR"] = scratch.appendingPathComponent("shards").path
        environment["ZAAS_AIRLLM_MAX_PROMPT_TOKENS"] = "64"
        environment["ZAAS_AIRLLM_MAX_QUEUE"] = String(maxQueue)
        environment["ZAAS_AIRLLM_ENGINE"] = engine
        environment["ZAAS_AIRLLM_THREADS"] = "1"
        if let memoryLimitMB { environment["ZAAS_AIRLLM_MEMORY_LIMIT_MB"] = String(memoryLimitMB) }
        environment["PYTHONUNBUFFERED"] = "1"
        self.environment = environment.merging(["ZAAS_AIRLLM_PYTHON": python]) { _, new in new }
    }

    deinit {
        self.kill()
        // ZAAS_KEEP_SIDECAR_LOGS=1 keeps the folder (its sidecar.log) for a failure to be read.
        if ProcessInfo.processInfo.environment["ZAAS_KEEP_SIDECAR_LOGS"] == nil {
            try? FileManager.default.removeItem(atPath: self.shards)
        }
    }

    /// Starts it; returns once `/health` says the model is loaded (importing PyTorch and splitting
    /// the checkpoint take some seconds).
    public func start() async throws {
        // At a lower priority: its generations run for tens of seconds at full speed on one core,
        // beside tests that time Redis round trips.
        let process = try ChildProcess(
            arguments: [
                "/usr/bin/nice", "-n", "10", self.environment["ZAAS_AIRLLM_PYTHON"]!,
                TestEnvironment.repositoryRoot.appendingPathComponent("infra/airllm/server.py").path,
            ],
            environment: self.environment, logFile: self.logFile)
        self.lock.withLock { self.process = process }
        let healthy = try await TestHTTP.waitUntil(timeout: .seconds(180)) {
            guard process.isRunning else { return true }
            return (try? await TestHTTP.send("GET", self.origin + "/health"))?.status == 200
        }
        guard healthy != nil, process.isRunning else {
            let log = (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? ""
            throw TestEnvironment.SetupError(message: "the AirLLM sidecar did not start:\n\(log.suffix(3000))")
        }
    }

    /// SIGKILL, as a crash would.
    public func kill() {
        self.lock.withLock {
            self.process?.kill()
            self.process = nil
        }
    }

    /// One sample of its `/metrics`: the series `name` (with `labels` among its labels, written
    /// as in the text, `outcome="ok"`), nil when absent.
    public func metric(_ name: String, labels: String? = nil) async throws -> Double? {
        let text = try await TestHTTP.send("GET", self.origin + "/metrics").text
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            if let labels, !line.contains(labels) { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }
}
