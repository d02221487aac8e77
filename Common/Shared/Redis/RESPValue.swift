/// A reply from Redis, as hiredis's reader delivers it.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    /// A binary-safe bulk string.
    case bulkString([UInt8])
    case null
    case array([RESPValue])

    /// The value as text: simple strings, and bulk strings that are valid UTF-8.
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let bytes): return String(validating: bytes, as: UTF8.self)
        default: return nil
        }
    }

    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): return bytes
        case .simpleString(let text): return Array(text.utf8)
        default: return nil
        }
    }

    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulkString, .simpleString: return self.string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool { self == .null }
}

/// One argument of a Redis command; binary-safe.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init(_ value: some BinaryInteger) { self.bytes = Array(String(value).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }

    public static func bytes(_ bytes: [UInt8]) -> RedisArgument { RedisArgument(bytes: bytes) }
    public static func string(_ string: String) -> RedisArgument { RedisArgument(string) }
    public static func int(_ value: some BinaryInteger) -> RedisArgument { RedisArgument(value) }
}

/// Why a Redis call failed.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Redis answered with an error reply (`ERR …`, `WRONGTYPE …`, `NOSCRIPT …`).
    case server(String)
    /// No connection could be made (refused, timed out, authentication failed).
    case unavailable(String)
    /// The connection closed before the reply arrived; the command may or may not have run.
    case connectionClosed
    /// The command never left this process because its connection was already closed; safe to retry.
    case notSent
    /// No reply within the command timeout; the connection is closed, since later replies would be out of order.
    case timeout
    /// The byte stream was not valid RESP.
    case protocolError(String)
    /// The client is shut down.
    case shutdown

    public var description: String {
        switch self {
        case .server(let message): "Redis error reply: \(message)"
        case .unavailable(let reason): "Redis unavailable: \(reason)"
        case .connectionClosed: "Redis connection closed before the reply arrived"
        case .notSent: "Redis connection was closed; command not sent"
        case .timeout: "Redis command timed out"
        case .protocolError(let reason): "Redis protocol error: \(reason)"
        case .shutdown: "Redis client is shut down"
        }
    }
}
