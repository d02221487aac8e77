import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The address of the client behind trusted proxies: a request from one of `trusted` (nginx in
/// front) is read for `X-Forwarded-For`, right to left, past the trusted hops; the first address
/// that is not one of them is the client. From anywhere else, or with a header that does not parse,
/// the connection's own address is the client: a client cannot pick the address its sign-in
/// failures are throttled under (docs/security.md).
public enum ClientAddress {
    public static func resolve(peer: String, forwardedFor: String?, trusted: TrustedProxies) -> String {
        guard !trusted.isEmpty, trusted.contains(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !hops.isEmpty, hops.allSatisfy(Self.isIPAddress) else { return peer }
        return hops.last { !trusted.contains($0) } ?? hops[0]
    }

    /// Whether `text` is an IPv4 or IPv6 address (no port, no brackets).
    public static func isIPAddress(_ text: String) -> Bool { Self.bytes(text) != nil }

    /// The address's bytes: 4 for IPv4 and IPv4-mapped IPv6, 16 for other IPv6; nil for anything else.
    static func bytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return Array(bytes[12..<16])
        }
        return bytes
    }

    /// One spelling per address (`::FFFF:127.0.0.1` and `::ffff:127.0.0.1` alike; IPv4-mapped IPv6
    /// as its IPv4), so comparisons hold; text that is no address is returned as it is.
    public static func canonical(_ text: String) -> String {
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return text }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil else { return text }
        return String(cString: buffer)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`http.trusted_proxies`): addresses, or
/// networks in CIDR form (`10.244.0.0/16`, `fd00::/8`) where proxies have no fixed address (pods
/// of a Kubernetes Deployment).
public struct TrustedProxies: Sendable, Equatable {
    struct Network: Sendable, Equatable {
        let bytes: [UInt8]
        let prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == self.bytes.count else { return false }
            let whole = self.prefix / 8
            guard address[..<whole] == self.bytes[..<whole] else { return false }
            let rest = self.prefix % 8
            guard rest > 0 else { return true }
            let mask = UInt8(0xFF) << (8 - rest)
            return address[whole] & mask == self.bytes[whole] & mask
        }
    }

    let networks: [Network]

    public static let none = TrustedProxies(networks: [])

    init(networks: [Network]) {
        self.networks = networks
    }

    /// Each entry an address or `address/prefix`; nil names the first entry that is neither.
    public static func parse(_ entries: [String]) -> Result<TrustedProxies, InvalidEntry> {
        var networks: [Network] = []
        for entry in entries {
            let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), let bytes = ClientAddress.bytes(String(parts[0])) else {
                return .failure(InvalidEntry(entry: entry))
            }
            var prefix = bytes.count * 8
            if parts.count == 2 {
                guard let given = Int(parts[1]), (0...bytes.count * 8).contains(given), parts[1].allSatisfy(\.isNumber)
                else { return .failure(InvalidEntry(entry: entry)) }
                prefix = given
            }
            networks.append(Network(bytes: bytes, prefix: prefix))
        }
        return .success(TrustedProxies(networks: networks))
    }

    public struct InvalidEntry: Error, Equatable {
        public let entry: String
    }

    public var isEmpty: Bool { self.networks.isEmpty }

    public func contains(_ address: String) -> Bool {
        guard let bytes = ClientAddress.bytes(address) else { return false }
        return self.networks.contains { $0.contains(bytes) }
    }
}
