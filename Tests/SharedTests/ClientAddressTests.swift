import Configuration
import Testing

@testable import Shared

@Suite("the client's address behind trusted proxies")
struct ClientAddressTests {
    @Test("X-Forwarded-For is believed only from a trusted proxy, read right to left past trusted hops")
    func resolve() {
        let trusted: Set<String> = ["10.0.0.5", "10.0.0.6"]
        // From nginx: the client it names.
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "203.0.113.7", trusted: trusted) == "203.0.113.7")
        // A client's own claim before the hops nginx added is skipped: the rightmost untrusted hop wins.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4, 203.0.113.7, 10.0.0.6", trusted: trusted)
                == "203.0.113.7")
        // From anywhere else the header is ignored.
        #expect(
            ClientAddress.resolve(peer: "198.51.100.9", forwardedFor: "1.2.3.4", trusted: trusted) == "198.51.100.9")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4", trusted: []) == "10.0.0.5")
        // A header that does not parse, or none: the connection's address.
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4, evil", trusted: trusted) == "10.0.0.5")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "", trusted: trusted) == "10.0.0.5")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: nil, trusted: trusted) == "10.0.0.5")
        // Only trusted hops: the first of them.
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "10.0.0.6", trusted: trusted) == "10.0.0.6")
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        #expect(
            ClientAddress.resolve(peer: "::ffff:10.0.0.5", forwardedFor: "2001:db8::1", trusted: trusted)
                == "2001:db8::1")
    }

    @Test("addresses are compared in one spelling")
    func canonical() {
        #expect(ClientAddress.canonical("::FFFF:127.0.0.1") == "127.0.0.1")
        #expect(ClientAddress.canonical("2001:DB8:0:0::1") == "2001:db8::1")
        #expect(ClientAddress.canonical("127.0.0.1") == "127.0.0.1")
        #expect(ClientAddress.isIPAddress("::1") && ClientAddress.isIPAddress("192.0.2.1"))
        #expect(!ClientAddress.isIPAddress("192.0.2.1:80") && !ClientAddress.isIPAddress("example.com"))
    }

    @Test("http.trusted_proxies takes IP addresses; anything else is refused at start")
    func setting() async throws {
        let defaults = ServerSettings.defaults(port: 8400)
        let good = try ServerSettings(
            reader: try await ConfigurationLoader.reader(
                defaults: defaults, environment: ["ZAAS_HTTP_TRUSTED_PROXIES": "127.0.0.1, ::1"]))
        #expect(good.trustedProxies == ["127.0.0.1", "::1"])
        #expect(
            try ServerSettings(reader: try await ConfigurationLoader.reader(defaults: defaults, environment: [:]))
                .trustedProxies.isEmpty)
        await #expect(throws: ConfigurationError.self) {
            try ServerSettings(
                reader: try await ConfigurationLoader.reader(
                    defaults: defaults, environment: ["ZAAS_HTTP_TRUSTED_PROXIES": "nginx.internal"]))
        }
    }
}
