import Crypto
import Foundation
import Shared
import Synchronization

/// What a node keeps of a question, by the tenant's choice (`store_raw_questions`; docs/audit.md):
///
/// - for the audit: the redacted text (or the raw one, opted in) and the keyed fingerprint;
/// - for the answer cache (the semantic tier's stream in Redis, the persistent tier's rows): the
///   redacted text with a keyed tag per datum (`[email 40213377]`), or the raw text, opted in.
///
/// Each tenant's key is derived from the deployment's fingerprint secret (`QuestionRedactor`).
/// Forms already made are remembered per (tenant, question), a bounded number, so a repeated
/// question (a cache hit) pays for the patterns once.
final class QuestionPrivacy: Sendable {
    struct Kept: Sendable {
        /// Personal data replaced by labels.
        let redacted: String
        let fingerprint: String
    }

    private struct Asked: Hashable {
        let tenant: UUID
        let question: String
    }

    static let rememberedLimit = 4096

    private let secret: SymmetricKey
    private let redactor = QuestionRedactor()
    private let keys = Mutex<[UUID: SymmetricKey]>([:])
    private let audited = Mutex<[Asked: Kept]>([:])

    init(secret: SymmetricKey) {
        self.secret = secret
    }

    /// The deployment's secret when `audit.fingerprint_secret` is not set: derived from the key
    /// pepper, which every node of a deployment shares.
    static func secret(pepper: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: pepper), info: Data("zaas audit fingerprint secret".utf8),
            outputByteCount: 32)
    }

    /// The question as an audit event keeps it.
    func forAudit(_ question: String, tenant: UUID) -> Kept {
        let asked = Asked(tenant: tenant, question: question)
        if let known = self.audited.withLock({ $0[asked] }) { return known }
        let key = self.key(for: tenant)
        let kept = Kept(
            redacted: self.redactor.redact(question), fingerprint: QuestionRedactor.fingerprint(question, key: key))
        self.audited.withLock { remembered in
            if remembered.count >= Self.rememberedLimit { remembered.removeAll(keepingCapacity: true) }
            remembered[asked] = kept
        }
        return kept
    }

    /// The question as the answer cache keeps it (and compares it, in the semantic tier's guard).
    func forCache(_ question: String, tenant: UUID, raw: Bool) -> String {
        raw ? question : self.redactor.redact(question, taggedWith: self.key(for: tenant))
    }

    private func key(for tenant: UUID) -> SymmetricKey {
        self.keys.withLock { keys in
            if let known = keys[tenant] { return known }
            let derived = QuestionRedactor.fingerprintKey(secret: self.secret, tenant: tenant)
            keys[tenant] = derived
            return derived
        }
    }
}
