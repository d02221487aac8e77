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
    public static func resolve(peer: String, forwardedFor: String?, trusted: Set<String>) -> String {
        guard !trusted.isEmpty, trusted.contains(Self.canonical(peer)), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !hops.isEmpty, hops.allSatisfy(Self.isIPAddress) else { return peer }
        return hops.last { !trusted.contains(Self.canonical($0)) } ?? hops[0]
    }

    /// Whether `text` is an IPv4 or IPv6 address (no port, no brackets).
    public static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
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
