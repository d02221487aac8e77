import Foundation

/// What benchmarks compare ZaaS with (docs/benchmarks.md): nginx from Debian answering every call
/// with one fixed chat completion (an instant model backend), and LiteLLM's proxy (PyPI, installed
/// once per machine by infra/fetch-bench-tools.sh, `ZAAS_LITELLM`) passing calls through to it.
public enum BenchAnchors {
    /// The completion nginx returns for every call: one sentence the demo canon's Lagrangian entry supports.
    public static let completion =
        #"{"id":"bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"The Lagrangian is kinetic minus potential energy [1]."},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":12,"total_tokens":112}}"#

    /// The body callers send to either anchor.
    public static let chat =
        #"{"model": "bench", "messages": [{"role": "user", "content": "How is the Lagrangian defined?"}]}"#

    /// The key callers present to LiteLLM's proxy (it refuses to start without one, as it should).
    public static let litellmKey =
        "sk-bench-" + (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()

    /// nginx on loopback answering every request with `completion`; its process and port.
    public static func startNginx(directory: String) async throws -> (ChildProcess, Int) {
        let port = try RedisServerProcess.freePort()
        let config = """
            worker_processes 1;
            daemon off;
            pid \(directory)/nginx.pid;
            error_log \(directory)/nginx-error.log warn;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path \(directory)/body;
                proxy_temp_path \(directory)/proxy;
                fastcgi_temp_path \(directory)/fastcgi;
                uwsgi_temp_path \(directory)/uwsgi;
                scgi_temp_path \(directory)/scgi;
                keepalive_requests 10000000;
                server {
                    listen 127.0.0.1:\(port);
                    location / { default_type application/json; return 200 '\(Self.completion)'; }
                }
            }
            """
        try config.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let binary = FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx"
        let process = try ChildProcess(
            arguments: [binary, "-c", directory + "/nginx.conf", "-e", directory + "/nginx-error.log"],
            environment: ProcessInfo.processInfo.environment, logFile: directory + "/nginx.log")
        let up = try await TestHTTP.waitUntil(timeout: .seconds(10)) {
            (try? await TestHTTP.send("POST", "http://127.0.0.1:\(port)/v1/chat/completions", json: "{}"))?.status
                == 200
        }
        guard up != nil else {
            process.kill()
            throw TestEnvironment.SetupError(message: "nginx did not start (\(directory))")
        }
        return (process, port)
    }

    /// LiteLLM's proxy in front of nginx on `nginxPort`: one worker, no database, one master key
    /// (`litellmKey`), the model named `bench`; its process and port.
    public static func startLiteLLM(_ executable: String, nginxPort: Int, directory: String) async throws -> (
        ChildProcess, Int
    ) {
        let port = try RedisServerProcess.freePort()
        let config = """
            model_list:
              - model_name: bench
                litellm_params:
                  model: openai/bench
                  api_base: http://127.0.0.1:\(nginxPort)/v1
                  api_key: none
            litellm_settings:
              telemetry: false
            """
        try config.write(toFile: directory + "/litellm.yaml", atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["LITELLM_LOG"] = "ERROR"
        environment["LITELLM_MASTER_KEY"] = Self.litellmKey
        environment["LITELLM_TELEMETRY"] = "False"
        environment["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        let process = try ChildProcess(
            arguments: [
                executable, "--config", directory + "/litellm.yaml", "--host", "127.0.0.1", "--port", String(port),
                "--num_workers", "1",
            ], environment: environment, logFile: directory + "/litellm.log")
        let up = try await TestHTTP.waitUntil(timeout: .seconds(180)) {
            (try? await TestHTTP.send("GET", "http://127.0.0.1:\(port)/health/liveliness"))?.status == 200
        }
        guard up != nil else {
            process.kill()
            let log = (try? String(contentsOfFile: directory + "/litellm.log", encoding: .utf8)) ?? ""
            throw TestEnvironment.SetupError(message: "LiteLLM did not start: \(log.suffix(2000))")
        }
        return (process, port)
    }
}
