import Crypto
import Foundation
import Testing

@testable import Shared

@Suite("the audit's question redactor and fingerprint")
struct QuestionRedactorTests {
    let redactor = QuestionRedactor()

    @Test(
        "each kind of personal datum is replaced by its label",
        arguments: [
            ("Mail me at ada.lovelace+zaas@example.ac.uk about it", "Mail me at [email] about it"),
            ("Our server 192.168.10.254 logs it", "Our server [ip] logs it"),
            ("Reach fe80::1ff:fe23:4567:890a or 2001:db8::1 now", "Reach [ip] or [ip] now"),
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334 is ours", "[ip] is ours"),
            ("Card 4111 1111 1111 1111 was charged", "Card [card] was charged"),
            ("Card 5500-0000-0000-0004 too", "Card [card] too"),
            ("IBAN GB82 WEST 1234 5698 7654 32 on file", "IBAN [iban] on file"),
            ("SSN 078-05-1120 is mine", "SSN [national-id] is mine"),
            ("NI number AB 12 34 56 C please", "NI number [national-id] please"),
            ("Call +44 20 7946 0958 or (555) 867-5309", "Call [phone] or [phone]"),
            ("Use https://alice:s3cret@data.example.org/x to fetch", "Use [url-with-credentials] to fetch"),
            (
                "My key zaas_live_abcdefghij0123456789_\(String(repeating: "0f", count: 32)) leaked",
                "My key [secret] leaked"
            ),
            ("token sk-abcdefghijklmnopqrstuvwx works", "token [secret] works"),
        ])
    func redacts(_ input: String, _ expected: String) {
        #expect(self.redactor.redact(input) == expected, "\(self.redactor.redact(input))")
    }

    @Test(
        "the numbers a research question is made of are kept",
        arguments: [
            "Did Noether publish in 1915 or 1918?",
            "Why does the cryostat boil off 1.2 litres of helium a day at 4.2 K?",
            "Is the GUT scale 10^16 GeV or 2 × 10^15 GeV?",
            "What is G = 6.674e-11 in natural units?",
            "Explain the result of 12:30:45 UTC on 2024-05-01.",
            "Compare 4111 and 1111 in table 3.",
            "How does section 2.3.1 relate to equation (4.12)?",
            "Are 1234 5678 9012 3456 random digits a card?",
            "Is 02079460958 a phone number or a catalogue number?",
        ])
    func keeps(_ input: String) {
        #expect(self.redactor.redact(input) == input)
    }

    @Test("a card number must pass the Luhn check")
    func luhn() {
        #expect(QuestionRedactor.luhn("4111111111111111"))
        #expect(QuestionRedactor.luhn("79927398713") == false, "too short for a card")
        #expect(!QuestionRedactor.luhn("4111111111111112"))
    }

    @Test("fingerprints group repeats of one tenant's question and differ between tenants")
    func fingerprints() {
        let secret = SymmetricKey(data: Data(repeating: 7, count: 32))
        let tenantA = QuestionRedactor.fingerprintKey(secret: secret, tenant: UUID())
        let tenantB = QuestionRedactor.fingerprintKey(secret: secret, tenant: UUID())
        let one = QuestionRedactor.fingerprint("What is a Lagrangian?", key: tenantA)
        #expect(one == QuestionRedactor.fingerprint("  what is a   LAGRANGIAN? ", key: tenantA))
        #expect(one != QuestionRedactor.fingerprint("What is a Hamiltonian?", key: tenantA))
        #expect(one != QuestionRedactor.fingerprint("What is a Lagrangian?", key: tenantB))
        #expect(one.count == 64 && one.allSatisfy(\.isHexDigit))
    }

    @Test("tagged redaction: a datum's tag is eight keyed digits, the same for the same datum, other for another")
    func tagged() throws {
        let key = SymmetricKey(data: Data(repeating: 9, count: 32))
        let redactor = QuestionRedactor()
        let jane = redactor.redact("Did jane@example.org or +44 20 7946 0958 ask about 1915?", taggedWith: key)
        let match = try #require(jane.wholeMatch(of: /Did \[email (\d{8})\] or \[phone (\d{8})\] ask about 1915\?/))
        #expect(match.output.1 != match.output.2)
        #expect(redactor.redact("Did jane@example.org or +44 20 7946 0958 ask about 1915?", taggedWith: key) == jane)
        let bob = redactor.redact("Did bob@example.org or +44 20 7946 0958 ask about 1915?", taggedWith: key)
        #expect(bob != jane && bob.hasSuffix("[phone \(match.output.2)] ask about 1915?"))
        let otherKey = SymmetricKey(data: Data(repeating: 10, count: 32))
        #expect(
            redactor.redact("Did jane@example.org ask?", taggedWith: otherKey)
                != redactor.redact("Did jane@example.org ask?", taggedWith: key))
        #expect(redactor.redact("What is a Lagrangian?", taggedWith: key) == "What is a Lagrangian?")
    }
}
