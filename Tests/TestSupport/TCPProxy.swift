import Foundation

/// A TCP proxy in front of a service (python3's asyncio, as a child process), so a test can take
/// the service away from one client (`cut`: every connection dropped, new ones refused) and give
/// it back (`restore`) without stopping the service that other tests share.
public final class TCPProxy: @unchecked Sendable {
    public let port: Int
    let target: Int
    private var process: ChildProcess?

    static let script = """
        import asyncio, sys
        listen, target = int(sys.argv[1]), int(sys.argv[2])
        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except Exception:
                pass
            finally:
                writer.close()
        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection('127.0.0.1', target)
            except Exception:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', listen, reuse_address=True)
            async with server:
                await server.serve_forever()
        asyncio.run(main())
        """

    /// A proxy on a free port to `127.0.0.1:target`, not yet listening.
    public init(target: Int) throws {
        self.port = try RedisServerProcess.freePort()
        self.target = target
    }

    deinit { self.process?.kill() }

    /// Listens (again) and waits until connections go through.
    public func restore() async throws {
        guard self.process?.isRunning != true else { return }
        self.process = try await ChildProcess.pythonListener(
            script: Self.script, arguments: [String(self.port), String(self.target)], port: self.port,
            what: "the TCP proxy")
    }

    /// Drops every connection and refuses new ones, as a network partition or a stopped server would.
    public func cut() {
        self.process?.kill()
        self.process = nil
    }
}

extension ChildProcess {
    /// A python3 script (`python3 -c`) that listens on `port`, started and waited for until it
    /// accepts connections; tried five times (a port taken in between makes one attempt fail).
    static func pythonListener(script: String, arguments: [String], port: Int, what: String) async throws
        -> ChildProcess
    {
        for _ in 0..<5 {
            let process = try ChildProcess(
                arguments: ["/usr/bin/python3", "-c", script] + arguments, environment: ["PATH": "/usr/bin:/bin"])
            for _ in 0..<100 {
                if RedisServerProcess.canConnect(port: port) { return process }
                guard process.isRunning else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            process.kill()
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestEnvironment.SetupError(message: "\(what) did not listen on port \(port)")
    }
}
