import Foundation
import NIOPosix
import Testing

@testable import Shared

@Suite("Argon2id password hashing")
struct Argon2idTests {
    /// argon2id v=19 vectors from the reference implementation's test suite (phc-winner-argon2, src/test.c).
    static let referenceVectors: [(password: String, phc: String)] = [
        ("password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"),
        ("password", "$argon2id$v=19$m=262144,t=2,p=1$c29tZXNhbHQ$eP4eyR+zqlZX1y5xCFTkw9m5GYx0L5YWwvCFvtlbLow"),
        ("password", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"),
        ("password", "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc"),
        ("password", "$argon2id$v=19$m=65536,t=1,p=1$c29tZXNhbHQ$9qWtwbpyPd3vm1rB1GThgPzZ3/ydHL92zKL+15XZypg"),
        ("password", "$argon2id$v=19$m=65536,t=4,p=1$c29tZXNhbHQ$kCXUjmjvc5XMqQedpMTsOv+zyJEf5PhtGiUghW9jFyw"),
        ("differentpassword", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$C4TWUs9rDEvq7w3+J4umqA32aWKB1+DSiRuBfYxFj94"),
        ("password", "$argon2id$v=19$m=65536,t=2,p=1$ZGlmZnNhbHQ$vfMrBczELrFdWP0ZsfhWsRPaHppYdP3MVEMIVlqoFBw"),
    ]

    @Test("hashing with the reference salt and parameters reproduces every reference PHC string")
    func reproducesReferenceVectors() async throws {
        for vector in Self.referenceVectors {
            let parsed = try PHCString(parsing: vector.phc)
            // Off the cooperative pool, as the server does: m=262144 takes a while.
            let produced = try await NIOThreadPool.singleton.runIfActive {
                try Argon2id.hash(
                    password: Array(vector.password.utf8),
                    salt: parsed.salt,
                    parameters: .init(
                        memoryKiB: parsed.memoryKiB,
                        iterations: parsed.iterations,
                        parallelism: parsed.parallelism,
                        saltLength: parsed.salt.count,
                        hashLength: parsed.hash.count
                    )
                )
            }
            #expect(produced == vector.phc)
        }
    }

    @Test("verify accepts the reference password and rejects a different one")
    func verifiesReferenceVectors() async throws {
        let hasher = Argon2id()
        for vector in Self.referenceVectors.prefix(4) {
            #expect(try await hasher.verify(vector.password, against: vector.phc))
            #expect(try await hasher.verify(vector.password + "x", against: vector.phc) == false)
        }
    }

    @Test("new hashes use OWASP parameters, a fresh salt each time, and verify")
    func hashRoundTrip() async throws {
        let hasher = Argon2id()
        let first = try await hasher.hash("correct horse battery staple")
        let second = try await hasher.hash("correct horse battery staple")
        #expect(first.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(first != second)
        #expect(try await hasher.verify("correct horse battery staple", against: first))
        #expect(try await hasher.verify("correct horse battery stapler", against: first) == false)
        #expect(try await hasher.verify("", against: first) == false)
        let unicode = try await hasher.hash("pässwörd 🔑")
        #expect(try await hasher.verify("pässwörd 🔑", against: unicode))
    }

    @Test("no truncation of a valid PHC string verifies; structural truncations are malformed")
    func truncatedStringsNeverVerify() async throws {
        let hasher = Argon2id(parameters: .init(memoryKiB: 256, iterations: 1, parallelism: 1))
        let phc = Self.referenceVectors[2].phc
        for length in 0..<phc.count {
            let truncated = String(phc.prefix(length))
            let verified = try? await hasher.verify("password", against: truncated)
            #expect(verified != true, "prefix of length \(length) verified")
        }
        for cut in [
            "", "$", "$argon2id", "$argon2id$v=19", "$argon2id$v=19$m=256,t=2,p=1",
            "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ",
        ] {
            await #expect(throws: PasswordHashError.self) { try await hasher.verify("password", against: cut) }
        }
    }

    @Test("tampered strings either fail to parse or do not verify")
    func tamperedStrings() async throws {
        let hasher = Argon2id()
        let phc = Self.referenceVectors[2].phc  // m=256,t=2,p=1
        // A changed hash or parameter does not verify.
        #expect(
            try await hasher.verify("password", against: phc.replacingOccurrences(of: "$nf65", with: "$nf66")) == false)
        #expect(try await hasher.verify("password", against: phc.replacingOccurrences(of: "t=2", with: "t=3")) == false)
        #expect(
            try await hasher.verify(
                "password", against: phc.replacingOccurrences(of: "c29tZXNhbHQ", with: "ZGlmZnNhbHQ")) == false)
        // Non-canonical base64 (stray low bits in the last character) is malformed, not a different salt.
        await #expect(throws: PasswordHashError.self) {
            try await hasher.verify(
                "password", against: phc.replacingOccurrences(of: "c29tZXNhbHQ", with: "c29tZXNhbHR"))
        }

        let malformed: [String] = [
            phc.replacingOccurrences(of: "argon2id", with: "argon2i"),
            phc.replacingOccurrences(of: "v=19", with: "v=16"),
            phc.replacingOccurrences(of: "m=256", with: "m=0256"),
            phc.replacingOccurrences(of: "m=256", with: "m=-256"),
            phc.replacingOccurrences(of: "m=256", with: "m=99999999999"),
            phc.replacingOccurrences(of: "t=2", with: "t=0"),
            phc.replacingOccurrences(of: "p=1", with: "p=1,x=2"),
            phc.replacingOccurrences(of: "m=256,t=2,p=1", with: "t=2,m=256,p=1"),
            phc.replacingOccurrences(of: "c29tZXNhbHQ", with: "c29tZXNhbHQ="),
            phc.replacingOccurrences(of: "c29tZXNhbHQ", with: "c29t*XNhbHQ"),
            phc + "$extra",
            "argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        ]
        for string in malformed {
            await #expect(throws: PasswordHashError.self, "\(string)") {
                try await hasher.verify("password", against: string)
            }
        }
    }
}
