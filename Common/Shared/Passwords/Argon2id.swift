import CArgon2
import Foundation
import NIOPosix

/// Argon2id password hashing in PHC string format
/// (`$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`, unpadded standard base64).
///
/// Hashing is deliberately slow and memory-hard, so both entry points run on NIO's blocking
/// thread pool, never on an event loop.
public struct Argon2id: Sendable {
    public struct Parameters: Sendable, Equatable {
        /// Memory in KiB.
        public var memoryKiB: UInt32
        public var iterations: UInt32
        public var parallelism: UInt32
        public var saltLength: Int
        public var hashLength: Int

        public init(
            memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32, saltLength: Int = 16, hashLength: Int = 32
        ) {
            self.memoryKiB = memoryKiB
            self.iterations = iterations
            self.parallelism = parallelism
            self.saltLength = saltLength
            self.hashLength = hashLength
        }

        /// OWASP Password Storage Cheat Sheet, first Argon2id option: m=19 MiB, t=2, p=1.
        public static let owasp = Parameters(memoryKiB: 19 * 1024, iterations: 2, parallelism: 1)
    }

    /// Bounds on what a stored PHC string may ask for, so a tampered record cannot make the
    /// server allocate gigabytes or spin for minutes.
    static let maximumMemoryKiB: UInt32 = 1 << 20
    static let maximumIterations: UInt32 = 64
    static let maximumParallelism: UInt32 = 64

    public let parameters: Parameters
    private let threadPool: NIOThreadPool

    public init(parameters: Parameters = .owasp, threadPool: NIOThreadPool = .singleton) {
        self.parameters = parameters
        self.threadPool = threadPool
    }

    /// Hashes `password` with a fresh random salt.
    public func hash(_ password: String) async throws -> String {
        var salt = [UInt8](repeating: 0, count: self.parameters.saltLength)
        var generator = SystemRandomNumberGenerator()
        for index in salt.indices { salt[index] = generator.next() }
        let parameters = self.parameters
        let randomSalt = salt
        return try await self.threadPool.runIfActive {
            try Self.hash(password: Array(password.utf8), salt: randomSalt, parameters: parameters)
        }
    }

    /// Checks `password` against a stored PHC string. A wrong password is `false`; a malformed or
    /// tampered string is an error, so callers can tell a bad record from a bad password.
    public func verify(_ password: String, against phc: String) async throws -> Bool {
        let parsed = try PHCString(parsing: phc)
        return try await self.threadPool.runIfActive {
            let computed = try Self.raw(
                password: Array(password.utf8),
                salt: parsed.salt,
                parameters: Parameters(
                    memoryKiB: parsed.memoryKiB,
                    iterations: parsed.iterations,
                    parallelism: parsed.parallelism,
                    saltLength: parsed.salt.count,
                    hashLength: parsed.hash.count
                )
            )
            return constantTimeEqual(computed, parsed.hash)
        }
    }

    /// Synchronous hashing with a caller-supplied salt: for known-answer tests and tools.
    public static func hash(password: [UInt8], salt: [UInt8], parameters: Parameters) throws -> String {
        let digest = try raw(password: password, salt: salt, parameters: parameters)
        return PHCString(
            memoryKiB: parameters.memoryKiB,
            iterations: parameters.iterations,
            parallelism: parameters.parallelism,
            salt: salt,
            hash: digest
        ).encoded
    }

    static func raw(password: [UInt8], salt: [UInt8], parameters: Parameters) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: parameters.hashLength)
        let status = password.withUnsafeBytes { passwordBytes in
            salt.withUnsafeBytes { saltBytes in
                output.withUnsafeMutableBytes { outputBytes in
                    argon2id_hash_raw(
                        parameters.iterations,
                        parameters.memoryKiB,
                        parameters.parallelism,
                        passwordBytes.baseAddress,
                        passwordBytes.count,
                        saltBytes.baseAddress,
                        saltBytes.count,
                        outputBytes.baseAddress,
                        outputBytes.count
                    )
                }
            }
        }
        guard status == ARGON2_OK.rawValue else {
            throw PasswordHashError.hashingFailed(String(cString: argon2_error_message(status)))
        }
        return output
    }
}

/// Why a stored password hash could not be used.
public enum PasswordHashError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsupported(String)
    case hashingFailed(String)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed password hash: \(why)"
        case .unsupported(let why): "unsupported password hash: \(why)"
        case .hashingFailed(let why): "password hashing failed: \(why)"
        }
    }
}

/// A parsed `$argon2id$v=19$m=…,t=…,p=…$salt$hash` string. Parsing is strict: exactly this
/// algorithm and version, parameters in this order without leading zeros, canonical unpadded base64.
struct PHCString: Equatable {
    var memoryKiB: UInt32
    var iterations: UInt32
    var parallelism: UInt32
    var salt: [UInt8]
    var hash: [UInt8]

    init(memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32, salt: [UInt8], hash: [UInt8]) {
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
        self.salt = salt
        self.hash = hash
    }

    init(parsing string: String) throws {
        let fields = string.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0].isEmpty else {
            throw PasswordHashError.malformed("expected $argon2id$v=19$m=…,t=…,p=…$salt$hash")
        }
        guard fields[1] == "argon2id" else {
            throw PasswordHashError.unsupported("algorithm \(fields[1].prefix(16))")
        }
        guard fields[2] == "v=19" else {
            throw PasswordHashError.unsupported("version field \(fields[2].prefix(16))")
        }
        let parameters = fields[3].split(separator: ",", omittingEmptySubsequences: false)
        guard parameters.count == 3 else {
            throw PasswordHashError.malformed("expected m=…,t=…,p=…")
        }
        func number(_ field: Substring, _ name: String, _ range: ClosedRange<UInt32>) throws -> UInt32 {
            guard field.hasPrefix("\(name)=") else { throw PasswordHashError.malformed("expected \(name)=") }
            let digits = field.dropFirst(name.count + 1)
            guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
                digits == "0" || !digits.hasPrefix("0"), let value = UInt32(digits), range.contains(value)
            else {
                throw PasswordHashError.malformed("\(name) out of range")
            }
            return value
        }
        self.memoryKiB = try number(parameters[0], "m", 8...Argon2id.maximumMemoryKiB)
        self.iterations = try number(parameters[1], "t", 1...Argon2id.maximumIterations)
        self.parallelism = try number(parameters[2], "p", 1...Argon2id.maximumParallelism)
        guard self.memoryKiB >= 8 * self.parallelism else {
            throw PasswordHashError.malformed("m must be at least 8×p")
        }
        guard let salt = Self.decodeBase64(fields[4]), salt.count >= 8, salt.count <= 64 else {
            throw PasswordHashError.malformed("salt is not 8 to 64 bytes of unpadded base64")
        }
        guard let hash = Self.decodeBase64(fields[5]), hash.count >= 4, hash.count <= 128 else {
            throw PasswordHashError.malformed("hash is not 4 to 128 bytes of unpadded base64")
        }
        self.salt = salt
        self.hash = hash
    }

    var encoded: String {
        "$argon2id$v=19$m=\(memoryKiB),t=\(iterations),p=\(parallelism)$\(Self.encodeBase64(salt))$\(Self.encodeBase64(hash))"
    }

    static func encodeBase64(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    /// Unpadded standard base64, rejecting anything that would not re-encode to the same text.
    static func decodeBase64(_ text: Substring) -> [UInt8]? {
        guard !text.isEmpty, text.count % 4 != 1,
            text.utf8.allSatisfy({ byte in
                (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x2B || byte == 0x2F
            })
        else { return nil }
        let padded = String(text) + String(repeating: "=", count: (4 - text.count % 4) % 4)
        guard let data = Data(base64Encoded: padded) else { return nil }
        let bytes = [UInt8](data)
        guard encodeBase64(bytes) == text else { return nil }
        return bytes
    }
}
