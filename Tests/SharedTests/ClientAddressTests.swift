import Configuration
import Testing

@testable import Shared

@Suite("the client's address behind trusted proxies")
struct ClientAddressTests {
    @Test("X-Forwarded-For is believed only from a trusted proxy, read right to left past trusted hops")
    func resolve() throws {
        let trusted = try #require(try? TrustedProxies.parse(["10.0.0.5", "10.0.0.6"]).get())
        // From nginx: the client it names.
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "203.0.113.7", trusted: trusted) == "203.0.113.7")
        // A client's own claim before the hops nginx added is skipped: the rightmost untrusted hop wins.
        #expect(
            ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4, 203.0.113.7, 10.0.0.6", trusted: trusted)
                == "203.0.113.7")
        // From anywhere else the header is ignored.
        #expect(
            ClientAddress.resolve(peer: "198.51.100.9", forwardedFor: "1.2.3.4", trusted: trusted) == "198.51.100.9")
        #expect(ClientAddress.resolve(peer: "10.0.0.5", forwardedFor: "1.2.3.4", trusted: .none) == "10.0.0.5")
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

    @Test("networks in CIDR form: every address inside is trusted, none outside; both families")
    func networks() throws {
        let trusted = try TrustedProxies.parse(["10.244.0.0/16", "192.0.2.128/25", "fd00::/8", "::1"]).get()
        for inside in ["10.244.0.1", "10.244.255.254", "192.0.2.200", "fd12:3456::1", "::1", "::ffff:10.244.3.4"] {
            #expect(trusted.contains(inside), "\(inside)")
        }
        for outside in ["10.245.0.1", "10.243.255.255", "192.0.2.127", "fe80::1", "::2", "2001:db8::1", "nginx"] {
            #expect(!trusted.contains(outside), "\(outside)")
        }
        // A pod of the nginx Deployment: its header is believed; a client's own claim is skipped.
        #expect(
            ClientAddress.resolve(peer: "10.244.7.9", forwardedFor: "6.6.6.6, 203.0.113.7", trusted: trusted)
                == "203.0.113.7")
        #expect(
            ClientAddress.resolve(peer: "10.245.7.9", forwardedFor: "203.0.113.7", trusted: trusted) == "10.245.7.9")
        #expect(try TrustedProxies.parse(["0.0.0.0/0"]).get().contains("198.51.100.1"))
        #expect(try !TrustedProxies.parse(["0.0.0.0/0"]).get().contains("2001:db8::1"))
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "fd00::/129", "10.0.0.0/8/8", "nginx/8"] {
            #expect(TrustedProxies.parse([bad]) == .failure(.init(entry: bad)), "\(bad)")
        }
    }

    @Test("addresses are compared in one spelling")
    func canonical() {
        #expect(ClientAddress.canonical("::FFFF:127.0.0.1") == "127.0.0.1")
        #expect(ClientAddress.canonical("2001:DB8:0:0::1") == "2001:db8::1")
        #expect(ClientAddress.canonical("127.0.0.1") == "127.0.0.1")
        #expect(ClientAddress.isIPAddress("::1") && ClientAddress.isIPAddress("192.0.2.1"))
        #expect(!ClientAddress.isIPAddress("192.0.2.1:80") && !ClientAddress.isIPAddress("example.com"))
    }

    @Test("http.trusted_proxies takes IP addresses and networks; anything else is refused at start")
    func setting() async throws {
        let defaults = ServerSettings.defaults(port: 8400)
        let good = try ServerSettings(
            reader: try await ConfigurationLoader.reader(
                defaults: defaults, environment: ["ZAAS_HTTP_TRUSTED_PROXIES": "127.0.0.1, ::1, 10.244.0.0/16"]))
        #expect(good.trustedProxies == (try TrustedProxies.parse(["127.0.0.1", "::1", "10.244.0.0/16"]).get()))
        #expect(good.trustedProxies.contains("10.244.1.2") && !good.trustedProxies.contains("127.0.0.2"))
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
