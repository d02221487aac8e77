import Configuration
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import Shared
import TestSupport
import Testing

@testable import ControlPlane

/// The admin REST API end to end: real PostgreSQL, the application as zaas-control builds it.
@Suite("admin API: sessions and API keys")
struct AdminAPITests {
    static let logger = Logger(label: "test.admin")
    static let password = "long enough passphrase 42"

    struct Fixture: Sendable {
        let client: any TestClientProtocol
        let db: ScopedDatabase
        let tenantA: UUID
        let tenantB: UUID
        /// The schema owner, for what only a migration or an older release could have written.
        let owner: PostgresClient.Configuration
        let operatorID: UUID = UUID()
    }

    /// The node ids whose credentials `withAPI` issues (`TestEnvironment.nodeToken(for:)`).
    static let nodeIDs = ["node-a", "node-b", "node-current", "node-behind"]

    /// A migrated database with tenants A and B, each with an admin and a viewer, and a bootstrap operator.
    static func withAPI(_ body: @escaping @Sendable (Fixture) async throws -> Void) async throws {
        try await TestDatabase.withFresh { database in
            _ = try await withPostgresClient(database.owner) { owner in
                try await Migrator(applicationRole: TestEnvironment.shared.appUser, logger: logger).migrate(
                    client: owner)
            }
            try await database.enrollNodes(Self.nodeIDs)
            var environment: [String: String] = ["ZAAS_HTTP_PORT": "0", "ZAAS_MIGRATIONS_ON_START": "false"]
            for (key, value) in TestEnvironment.shared.controlPlaneSettings(database: database.name) {
                environment[ConfigurationError.environmentName(key)] = value
            }
            environment["ZAAS_BOOTSTRAP_OPERATOR_EMAIL"] = "ops@zaas.example"
            // Billing tests close periods themselves (BillingTests drives the scheduled closer).
            environment["ZAAS_BILLING_AUTO_CLOSE"] = "false"
            environment["ZAAS_BOOTSTRAP_OPERATOR_PASSWORD"] = password
            let configuration = try ControlPlaneConfiguration(
                reader: try await ConfigurationLoader.reader(
                    defaults: ControlPlaneConfiguration.defaults, environment: environment)
            )
            let app = try await buildApplication(configuration: configuration)
            try await withPostgresClient(database.app) { appClient in
                let db = ScopedDatabase(client: appClient)
                let hash = try await Argon2id().hash(password)
                var tenants: [UUID] = []
                for slug in ["alpha", "beta"] {
                    let tenant = UUID()
                    tenants.append(tenant)
                    try await db.withOperator(UUID(), logger: logger) { connection in
                        try await connection.query(
                            "INSERT INTO tenants (id, name, slug, tier_id) VALUES (\(tenant), \(slug), \(slug), 'pro')",
                            logger: logger
                        )
                        for role in ["admin", "viewer"] {
                            try await connection.query(
                                """
                                INSERT INTO admin_users (tenant_id, email, password_hash, role)
                                VALUES (\(tenant), \("\(role)@\(slug).example"), \(hash), \(role))
                                """,
                                logger: logger
                            )
                        }
                    }
                }
                let (tenantA, tenantB) = (tenants[0], tenants[1])
                try await app.test(.live) { client in
                    try await body(
                        Fixture(client: client, db: db, tenantA: tenantA, tenantB: tenantB, owner: database.owner))
                }
            }
        }
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
    }

    static func send(
        _ client: any TestClientProtocol,
        _ method: HTTPRequest.Method,
        _ uri: String,
        token: String? = nil,
        json: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var headers = headers
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil, headers[.contentType] == nil { headers[.contentType] = "application/json" }
        return try await client.execute(
            uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    static func signIn(_ client: any TestClientProtocol, _ email: String, _ password: String = password) async throws
        -> String
    {
        let response = try await send(
            client, .post, "/admin/v1/sessions", json: #"{"email": "\#(email)", "password": "\#(password)"}"#)
        #expect(response.status == .created, "sign-in of \(email): \(String(buffer: response.body))")
        return try #require(try json(response)["token"] as? String)
    }

    static func problemType(_ response: TestResponse) throws -> String? {
        #expect(response.headers[.contentType] == "application/problem+json")
        return try json(response)["type"] as? String
    }

    static func type(_ slug: String) -> String { "https://zaas.dev/problems/\(slug)" }

    @Test("sign in, see who I am, sign out; the token is dead afterwards")
    func sessionLifecycle() async throws {
        try await Self.withAPI { fixture in
            let token = try await Self.signIn(fixture.client, "Admin@Alpha.example")
            #expect(token.hasPrefix("zsess_") && token.count == 70)
            let me = try await Self.send(fixture.client, .get, "/admin/v1/me", token: token)
            #expect(me.status == .ok)
            let body = try Self.json(me)
            #expect(body["kind"] as? String == "tenant_admin")
            #expect(body["role"] as? String == "admin")
            #expect(body["tenant_id"] as? String == fixture.tenantA.uuidString.lowercased())

            let operatorToken = try await Self.signIn(fixture.client, "ops@zaas.example")
            let operatorMe = try Self.json(
                try await Self.send(fixture.client, .get, "/admin/v1/me", token: operatorToken))
            #expect(operatorMe["kind"] as? String == "operator")

            #expect(
                try await Self.send(fixture.client, .delete, "/admin/v1/sessions/current", token: token).status
                    == .noContent)
            let after = try await Self.send(fixture.client, .get, "/admin/v1/me", token: token)
            #expect(after.status == .unauthorized)
            #expect(try Self.problemType(after) == Self.type("unauthenticated"))

            for bad in ["Bearer nonsense", "Basic abc", "Bearer zsess_" + String(repeating: "0", count: 64)] {
                let response = try await Self.send(fixture.client, .get, "/admin/v1/me", headers: [.authorization: bad])
                #expect(response.status == .unauthorized, "\(bad)")
            }
            #expect(try await Self.send(fixture.client, .get, "/admin/v1/me").status == .unauthorized)
        }
    }

    @Test(
        "unknown email and wrong password get the same answer; five failures from one address throttle it (429, Retry-After) before any account is locked"
    )
    func signInFailures() async throws {
        try await Self.withAPI { fixture in
            let unknown = try await Self.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "nobody@alpha.example", "password": "whatever-whatever"}"#
            )
            let wrong = try await Self.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "admin@alpha.example", "password": "whatever-whatever"}"#
            )
            #expect(unknown.status == .unauthorized && wrong.status == .unauthorized)
            var first = try Self.json(unknown)
            var second = try Self.json(wrong)
            first["request_id"] = nil
            second["request_id"] = nil
            #expect(NSDictionary(dictionary: first).isEqual(to: second))

            for _ in 0..<3 {
                let response = try await Self.send(
                    fixture.client, .post, "/admin/v1/sessions",
                    json: #"{"email": "admin@alpha.example", "password": "whatever-whatever"}"#
                )
                #expect(response.status == .unauthorized)
            }
            // Five failures from this address: it waits now, whatever the account or password.
            for email in ["admin@alpha.example", "viewer@alpha.example"] {
                let throttled = try await Self.send(
                    fixture.client, .post, "/admin/v1/sessions",
                    json: #"{"email": "\#(email)", "password": "\#(Self.password)"}"#
                )
                #expect(throttled.status == .tooManyRequests, "\(String(buffer: throttled.body))")
                #expect(try Self.problemType(throttled) == Self.type("sign-in-throttled"))
                let retry = Int(throttled.headers[.retryAfter] ?? "") ?? 0
                #expect((1...60).contains(retry), "\(retry)")
            }
            // The account itself is not locked: the database counted four failures, far from its lock.
            let failures = try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                var value = -1
                for try await (count, locked) in try await connection.query(
                    "SELECT failed_logins, locked_until IS NOT NULL FROM admin_users WHERE email = 'admin@alpha.example'",
                    logger: Self.logger
                ).decode((Int, Bool).self) {
                    value = locked ? -2 : count
                }
                return value
            }
            #expect(failures == 4)
        }
    }

    @Test(
        "twenty failures from many addresses lock the account in the database for every control plane, for at most 15 minutes"
    )
    func accountLockBackstop() async throws {
        try await Self.withAPI { fixture in
            let hasher = GatedHasher(hasher: Argon2id(), gate: HashingGate())
            func service() async throws -> AuthService {
                AuthService(
                    database: fixture.db, hasher: hasher, throttle: SignInThrottle(),
                    dummyHash: try await hasher.hash("dummy-dummy-dummy"), sessionLifetime: .seconds(3600))
            }
            let first = try await service()
            for index in 0..<20 {
                await #expect(throws: Problem.self) {
                    try await first.signIn(
                        email: "admin@alpha.example", password: "wrong-password-\(index)", address: "10.0.0.\(index)",
                        logger: Self.logger)
                }
            }
            // The account's own bucket is empty on this instance: 429.
            do {
                _ = try await first.signIn(
                    email: "admin@alpha.example", password: Self.password, address: "10.0.1.1", logger: Self.logger)
                Issue.record("signed in past the account's throttle")
            } catch let problem as Problem {
                #expect(problem.slug == "sign-in-throttled")
            }
            // Another instance (its own memory) still finds the account locked in the database.
            do {
                _ = try await try await service().signIn(
                    email: "admin@alpha.example", password: Self.password, address: "10.0.1.2", logger: Self.logger)
                Issue.record("signed in to a locked account")
            } catch let problem as Problem {
                #expect(problem.slug == "invalid-credentials")
            }
            let minutes = try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                var value = 0.0
                for try await minutes in try await connection.query(
                    "SELECT (extract(epoch FROM locked_until - now()) / 60)::float8 FROM admin_users WHERE email = 'admin@alpha.example'",
                    logger: Self.logger
                ).decode(Double.self) {
                    value = minutes
                }
                return value
            }
            #expect(minutes > 0 && minutes <= 15, "\(minutes)")
            // Other accounts are unaffected.
            _ = try await try await service().signIn(
                email: "viewer@alpha.example", password: Self.password, address: "10.0.1.3", logger: Self.logger)
        }
    }

    @Test("one address names one account: an admin cannot take the operator's or another tenant's email")
    func emailsAreUniqueAcrossAccounts() async throws {
        try await Self.withAPI { fixture in
            let adminA = try await Self.signIn(fixture.client, "admin@alpha.example")
            let adminB = try await Self.signIn(fixture.client, "admin@beta.example")
            func create(_ email: String, token: String) async throws -> TestResponse {
                try await Self.send(
                    fixture.client, .post, "/admin/v1/admins", token: token,
                    json: #"{"email": "\#(email)", "password": "\#(Self.password)", "role": "admin"}"#)
            }
            // The operator's address, in any case, and another tenant's admin's address: the same 409,
            // which names no tenant.
            var bodies: [[String: Any]] = []
            for (email, token) in [
                ("ops@zaas.example", adminA), ("OPS@Zaas.Example", adminA), ("viewer@beta.example", adminA),
                ("Admin@Alpha.example", adminB),
            ] {
                let refused = try await create(email, token: token)
                #expect(refused.status == .conflict, "\(email): \(String(buffer: refused.body))")
                #expect(try Self.problemType(refused) == Self.type("conflict"))
                var body = try Self.json(refused)
                body["request_id"] = nil
                bodies.append(body)
                let text = String(buffer: refused.body)
                for tenant in [fixture.tenantA, fixture.tenantB] {
                    #expect(!text.contains(tenant.lowercased) && !text.contains("alpha") && !text.contains("beta"))
                }
            }
            #expect(bodies.dropFirst().allSatisfy { NSDictionary(dictionary: $0).isEqual(to: bodies[0]) })
            // The operator still signs in; a fresh address is still accepted.
            _ = try await Self.signIn(fixture.client, "ops@zaas.example")
            #expect(try await create("second@alpha.example", token: adminA).status == .created)

            // An address two accounts already share (written before the registry existed) signs
            // neither in, even with the right password.
            try await withPostgresClient(fixture.owner) { owner in
                try await owner.query(
                    "ALTER TABLE admin_users DISABLE TRIGGER account_email_registry", logger: Self.logger)
                let hash = try await Argon2id().hash(Self.password)
                try await owner.query(
                    """
                    INSERT INTO admin_users (tenant_id, email, password_hash, role)
                    VALUES (\(fixture.tenantB), 'ops@zaas.example', \(hash), 'admin')
                    """, logger: Self.logger)
                try await owner.query(
                    "ALTER TABLE admin_users ENABLE TRIGGER account_email_registry", logger: Self.logger)
            }
            let ambiguous = try await Self.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "ops@zaas.example", "password": "\#(Self.password)"}"#)
            #expect(ambiguous.status == .unauthorized)
            #expect(try Self.problemType(ambiguous) == Self.type("invalid-credentials"))
        }
    }

    @Test(
        "the persistent cache store: when PostgreSQL refuses a batch's data, each entry is written on its own and only the refused ones are lost"
    )
    func answerCacheStoreFallback() async throws {
        try await Self.withAPI { fixture in
            let store = AnswerCacheStore(client: fixture.db.client)
            func record(_ digest: String, question: String = "q") -> AnswerCacheRecord {
                AnswerCacheRecord(
                    tenantId: fixture.tenantA, digest: digest, scope: String(repeating: "0", count: 32),
                    question: question, embedding: nil, answer: #"{"a": 1}"#, ttlSeconds: 60)
            }
            // What the rules refuse before the database, sent past them: a digest the column's
            // check refuses, and U+0000, which PostgreSQL cannot hold in text.
            let outcome = try await store.put(
                [
                    record("xyz"), record(String(repeating: "a", count: 64)),
                    record(String(repeating: "b", count: 64), question: "nul \u{0} inside"),
                    record(String(repeating: "c", count: 64)),
                ], logger: Self.logger)
            #expect(outcome.stored == 2)
            #expect(outcome.refused.map(\.index) == [0, 2])
            #expect(outcome.refused.allSatisfy { $0.reason.hasPrefix("refused by the database (SQLSTATE 2") })
            #expect(
                try await store.get(
                    tenant: fixture.tenantA, digest: String(repeating: "c", count: 64), logger: Self.logger) != nil)
        }
    }

    @Test("malformed, oversized, mistyped and unknown-field bodies get precise problems")
    func badBodies() async throws {
        try await Self.withAPI { fixture in
            let cases: [(String?, HTTPFields, HTTPResponse.Status, String)] = [
                ("{\"email\": ", [:], .badRequest, "bad-request"),
                ("[1, 2]", [:], .badRequest, "bad-request"),
                (
                    #"{"email": "a@b.co", "password": "x", "admin": true}"#, [:], .unprocessableContent,
                    "validation-failed"
                ),
                (#"{"email": "a@b.co"}"#, [:], .unprocessableContent, "validation-failed"),
                (#"{"email": 5, "password": "x"}"#, [:], .unprocessableContent, "validation-failed"),
                (
                    #"{"email": "a@b.co", "password": "x"}"#, [.contentType: "text/plain"], .unsupportedMediaType,
                    "unsupported-media-type"
                ),
                (
                    "{\"email\": \"" + String(repeating: "a", count: 70_000) + "\"}", [:], .contentTooLarge,
                    "payload-too-large"
                ),
            ]
            for (body, headers, status, slug) in cases {
                let response = try await Self.send(
                    fixture.client, .post, "/admin/v1/sessions", json: body, headers: headers)
                #expect(response.status == status, "\(body?.prefix(60) ?? "")")
                #expect(try Self.problemType(response) == Self.type(slug), "\(body?.prefix(60) ?? "")")
            }
            let unknownField = try await Self.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "a@b.co", "password": "x", "admin": true}"#
            )
            let errors = try #require(try Self.json(unknownField)["errors"] as? [[String: String]])
            #expect(errors == [["field": "admin", "message": "unknown field"]])
        }
    }

    @Test("keys: create shows the secret once, list and get never do, the digest is what is stored")
    func keyLifecycle() async throws {
        try await Self.withAPI { fixture in
            let token = try await Self.signIn(fixture.client, "admin@alpha.example")
            let created = try await Self.send(
                fixture.client, .post, "/admin/v1/keys", token: token,
                json: #"{"name": "ingest", "scopes": ["query", "stats:read", "query"], "environment": "test"}"#
            )
            #expect(created.status == .created)
            let body = try Self.json(created)
            let text = try #require(body["key"] as? String)
            let key = try APIKey(parsing: text)
            #expect(key.environment == .test)
            let apiKey = try #require(body["api_key"] as? [String: Any])
            #expect(apiKey["scopes"] as? [String] == ["query", "stats:read"])
            #expect(apiKey["status"] as? String == "active")
            let id = try #require(apiKey["id"] as? String)
            #expect(created.headers[.location] == "/admin/v1/keys/\(id)")

            // Stored: the HMAC digest under the configured pepper, never the secret.
            let digester = try APIKeyDigester(pepper: [UInt8](repeating: 0x5a, count: 32))
            try await fixture.db.withTenant(fixture.tenantA, logger: Self.logger) { connection in
                for try await digest in try await connection.query(
                    "SELECT secret_digest FROM api_keys WHERE key_id = \(key.keyID)",
                    logger: Self.logger
                ).decode(ByteBuffer.self) {
                    #expect(digester.verify(key.secret, against: Array(digest.readableBytesView)))
                }
            }

            let list = try await Self.send(fixture.client, .get, "/admin/v1/keys", token: token)
            #expect(list.status == .ok)
            #expect(!String(buffer: list.body).contains(Hex.encode(key.secret)))
            #expect((try Self.json(list)["items"] as? [Any])?.count == 1)

            let single = try await Self.send(fixture.client, .get, "/admin/v1/keys/\(id)", token: token)
            #expect(single.status == .ok)
            #expect(single.headers[.eTag] == "\"r1\"")
            #expect(!String(buffer: single.body).contains(Hex.encode(key.secret)))
        }
    }

    @Test("keys: rotate keeps the old key for the grace period; revoke is immediate; If-Match guards both")
    func rotateAndRevoke() async throws {
        try await Self.withAPI { fixture in
            let token = try await Self.signIn(fixture.client, "admin@alpha.example")
            let created = try Self.json(
                try await Self.send(
                    fixture.client, .post, "/admin/v1/keys", token: token, json: #"{"name": "a", "scopes": ["query"]}"#)
            )
            let oldID = try #require((created["api_key"] as? [String: Any])?["id"] as? String)

            let stale = try await Self.send(
                fixture.client, .post, "/admin/v1/keys/\(oldID)/rotate", token: token,
                json: #"{"grace_seconds": 600}"#, headers: [.ifMatch: "\"r7\""]
            )
            #expect(stale.status == .preconditionFailed)

            let rotated = try await Self.send(
                fixture.client, .post, "/admin/v1/keys/\(oldID)/rotate", token: token,
                json: #"{"grace_seconds": 600}"#, headers: [.ifMatch: "\"r1\""]
            )
            #expect(rotated.status == .created)
            let newKey = try #require(try Self.json(rotated)["api_key"] as? [String: Any])
            let newID = try #require(newKey["id"] as? String)
            let old = try Self.json(try await Self.send(fixture.client, .get, "/admin/v1/keys/\(oldID)", token: token))
            #expect(old["status"] as? String == "rotating")
            #expect(old["replaced_by"] as? String == newID)

            let again = try await Self.send(
                fixture.client, .post, "/admin/v1/keys/\(oldID)/rotate", token: token, json: "{}"
            )
            #expect(again.status == .conflict)
            let badGrace = try await Self.send(
                fixture.client, .post, "/admin/v1/keys/\(newID)/rotate", token: token, json: #"{"grace_seconds": -1}"#
            )
            #expect(badGrace.status == .unprocessableContent)

            #expect(
                try await Self.send(fixture.client, .delete, "/admin/v1/keys/\(newID)", token: token).status
                    == .noContent)
            #expect(
                try await Self.send(fixture.client, .delete, "/admin/v1/keys/\(newID)", token: token).status
                    == .noContent)
            let revoked = try Self.json(
                try await Self.send(fixture.client, .get, "/admin/v1/keys/\(newID)", token: token))
            #expect(revoked["status"] as? String == "revoked")
            let active = try Self.json(
                try await Self.send(fixture.client, .get, "/admin/v1/keys?status=active", token: token))
            #expect((active["items"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [oldID])
        }
    }

    @Test("keys: invalid input is refused whole, with every problem listed")
    func keyValidation() async throws {
        try await Self.withAPI { fixture in
            let token = try await Self.signIn(fixture.client, "admin@alpha.example")
            let response = try await Self.send(
                fixture.client, .post, "/admin/v1/keys", token: token,
                json:
                    #"{"name": "  ", "scopes": ["query", "root"], "environment": "prod", "expires_at": "2001-01-01T00:00:00Z"}"#
            )
            #expect(response.status == .unprocessableContent)
            let fields = try #require(try Self.json(response)["errors"] as? [[String: String]]).compactMap {
                $0["field"]
            }
            #expect(Set(fields) == ["name", "scopes", "environment", "expires_at"])
            // NUL (PostgreSQL cannot store it), other control characters, and a name of one
            // grapheme but 201 code points (the unit the column counts): 422, never 500.
            for name in [#"a\u0000b"#, #"tab\there"#, "e" + String(repeating: #"\u0301"#, count: 200)] {
                let refused = try await Self.send(
                    fixture.client, .post, "/admin/v1/keys", token: token,
                    json: #"{"name": "\#(name)", "scopes": ["query"]}"#)
                #expect(refused.status == .unprocessableContent, "\(name): \(String(buffer: refused.body))")
                #expect(try Self.problemType(refused) == Self.type("validation-failed"))
            }
            // Admin emails and passwords with NUL or control characters: 422 as well.
            for body in [
                #"{"email": "a\u0000@alpha.example", "password": "\#(Self.password)", "role": "viewer"}"#,
                #"{"email": "a\u007f@alpha.example", "password": "\#(Self.password)", "role": "viewer"}"#,
                #"{"email": "nul@alpha.example", "password": "long enough \u0000 passphrase", "role": "viewer"}"#,
            ] {
                let refused = try await Self.send(fixture.client, .post, "/admin/v1/admins", token: token, json: body)
                #expect(refused.status == .unprocessableContent, "\(body): \(String(buffer: refused.body))")
            }
            for query in ["limit=0", "limit=abc", "status=weird", "cursor=nope"] {
                #expect(
                    try await Self.send(fixture.client, .get, "/admin/v1/keys?\(query)", token: token).status
                        == .unprocessableContent)
            }
            let list = try Self.json(try await Self.send(fixture.client, .get, "/admin/v1/keys", token: token))
            #expect((list["items"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("a tenant holds at most its tier's (or policy's) active keys, also when creations race; revoking makes room")
    func keyCap() async throws {
        try await Self.withAPI { fixture in
            let ops = try await Self.signIn(fixture.client, "ops@zaas.example")
            let tenant = try Self.json(
                try await Self.send(fixture.client, .get, "/admin/v1/tenants/\(fixture.tenantA)", token: ops))
            #expect((tenant["limits"] as? [String: Any])?["max_active_keys"] as? Int == 20)  // Pro
            #expect((tenant["limits"] as? [String: Any])?["tenant_queries_per_hour"] as? Int == 100)
            let policy = try await Self.send(
                fixture.client, .put, "/admin/v1/tenants/\(fixture.tenantA)/quota-policy", token: ops,
                json: #"{"max_active_keys": 3}"#)
            #expect(policy.status == .ok, "\(String(buffer: policy.body))")
            let admin = try await Self.signIn(fixture.client, "admin@alpha.example")
            let client = fixture.client
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<6 {
                    group.addTask {
                        try await Self.send(
                            client, .post, "/admin/v1/keys", token: admin,
                            json: #"{"name": "k\#(index)", "scopes": ["query"]}"#
                        ).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == 3, "\(statuses)")
            #expect(statuses.filter { $0 == .conflict }.count == 3, "\(statuses)")
            let refused = try await Self.send(
                fixture.client, .post, "/admin/v1/keys", token: admin, json: #"{"name": "more", "scopes": ["query"]}"#)
            #expect(try Self.problemType(refused) == Self.type("key-limit-reached"))
            let list = try Self.json(try await Self.send(fixture.client, .get, "/admin/v1/keys", token: admin))
            let first = try #require((list["items"] as? [[String: Any]])?.first?["id"] as? String)
            #expect(
                try await Self.send(fixture.client, .delete, "/admin/v1/keys/\(first)", token: admin).status
                    == .noContent)
            let again = try await Self.send(
                fixture.client, .post, "/admin/v1/keys", token: admin, json: #"{"name": "again", "scopes": ["query"]}"#)
            #expect(again.status == .created)
        }
    }

    @Test("A's admin cannot read, rotate or revoke B's keys: 404, as for ids that do not exist")
    func crossTenantKeys() async throws {
        try await Self.withAPI { fixture in
            let tokenA = try await Self.signIn(fixture.client, "admin@alpha.example")
            let tokenB = try await Self.signIn(fixture.client, "admin@beta.example")
            let createdB = try Self.json(
                try await Self.send(
                    fixture.client, .post, "/admin/v1/keys", token: tokenB, json: #"{"name": "b", "scopes": ["query"]}"#
                )
            )
            let idB = try #require((createdB["api_key"] as? [String: Any])?["id"] as? String)
            for (method, path, body) in [
                (HTTPRequest.Method.get, "/admin/v1/keys/\(idB)", nil),
                (.post, "/admin/v1/keys/\(idB)/rotate", "{}"),
                (.delete, "/admin/v1/keys/\(idB)", nil),
                (.get, "/admin/v1/keys/\(UUID().uuidString.lowercased())", nil),
                (.get, "/admin/v1/keys/not-a-uuid", nil),
            ] as [(HTTPRequest.Method, String, String?)] {
                let response = try await Self.send(fixture.client, method, path, token: tokenA, json: body)
                #expect(response.status == .notFound, "\(method) \(path)")
                #expect(try Self.problemType(response) == Self.type("not-found"))
            }
            let listA = try Self.json(try await Self.send(fixture.client, .get, "/admin/v1/keys", token: tokenA))
            #expect((listA["items"] as? [Any])?.isEmpty == true)
            let stillB = try Self.json(
                try await Self.send(fixture.client, .get, "/admin/v1/keys/\(idB)", token: tokenB))
            #expect(stillB["status"] as? String == "active")
        }
    }

    @Test("viewers read but cannot write; operators are not tenant admins; suspended tenants' tokens stop working")
    func rolesAndSuspension() async throws {
        try await Self.withAPI { fixture in
            let viewer = try await Self.signIn(fixture.client, "viewer@alpha.example")
            #expect(try await Self.send(fixture.client, .get, "/admin/v1/keys", token: viewer).status == .ok)
            let write = try await Self.send(
                fixture.client, .post, "/admin/v1/keys", token: viewer, json: #"{"name": "v", "scopes": ["query"]}"#
            )
            #expect(write.status == .forbidden)
            #expect(try Self.problemType(write) == Self.type("forbidden"))

            let operatorToken = try await Self.signIn(fixture.client, "ops@zaas.example")
            #expect(
                try await Self.send(fixture.client, .get, "/admin/v1/keys", token: operatorToken).status == .forbidden)

            let admin = try await Self.signIn(fixture.client, "admin@alpha.example")
            _ = try await fixture.db.withOperator(fixture.operatorID, logger: Self.logger) { connection in
                try await connection.query(
                    "UPDATE tenants SET status = 'suspended' WHERE id = \(fixture.tenantA)",
                    logger: Self.logger
                )
            }
            let suspended = try await Self.send(fixture.client, .get, "/admin/v1/keys", token: admin)
            #expect(suspended.status == .forbidden)
            #expect(try Self.problemType(suspended) == Self.type("tenant-not-active"))
            let signIn = try await Self.send(
                fixture.client, .post, "/admin/v1/sessions",
                json: #"{"email": "admin@alpha.example", "password": "\#(Self.password)"}"#
            )
            #expect(signIn.status == .forbidden)
            // B is untouched.
            _ = try await Self.signIn(fixture.client, "admin@beta.example")
        }
    }
}
