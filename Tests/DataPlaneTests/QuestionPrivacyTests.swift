import Crypto
import Foundation
import Testing

@testable import DataPlane

@Suite("what a node keeps of questions: redacted and fingerprinted unless the tenant opted in")
struct QuestionPrivacyTests {
    let privacy = QuestionPrivacy(secret: SymmetricKey(data: Data(repeating: 3, count: 32)))

    @Test("the audit form: redacted text and a fingerprint per tenant, the same on every call")
    func audit() {
        let tenant = UUID()
        let kept = self.privacy.forAudit("Mail ada@example.org about the Lagrangian", tenant: tenant)
        #expect(kept.redacted == "Mail [email] about the Lagrangian")
        #expect(kept.fingerprint.count == 64)
        #expect(
            self.privacy.forAudit("Mail ada@example.org about the Lagrangian", tenant: tenant).fingerprint
                == kept.fingerprint)
        #expect(
            self.privacy.forAudit("Mail ada@example.org about the Lagrangian", tenant: UUID()).fingerprint
                != kept.fingerprint)
    }

    @Test("the cache form keeps no personal datum, yet questions differing in one still differ to the semantic guard")
    func cache() {
        let tenant = UUID()
        let first = self.privacy.forCache("what did +44 20 7946 0958 report?", tenant: tenant, raw: false)
        let second = self.privacy.forCache("what did +44 20 7946 0959 report?", tenant: tenant, raw: false)
        // The whole number gives way to an 8-digit tag keyed per tenant: the tag's digits are the only
        // ones left (a substring check for "7946" would fail by chance when the tag happens to hold it).
        #expect(first.wholeMatch(of: /what did \[phone [0-9]{8}\] report\?/) != nil, "\(first)")
        #expect(QuestionGuard.compare(first, second) == .numbers)
        #expect(
            QuestionGuard.compare(
                first, self.privacy.forCache("what did +44 20 7946 0958 report?", tenant: tenant, raw: false))
                == .compatible)
        #expect(
            self.privacy.forCache("what did +44 20 7946 0958 report?", tenant: tenant, raw: true)
                == "what did +44 20 7946 0958 report?")
    }
}
