import Foundation
import Testing

@testable import Shared

@Suite("audit events: the versioned shape and time-ordered ids")
struct AuditEventTests {
    @Test("version-7 ids carry their millisecond, sort by it, and have the version and variant bits")
    func timeOrderedIDs() {
        let earlier = Date(timeIntervalSince1970: 1_796_000_000.123)
        let later = earlier.addingTimeInterval(0.002)
        let first = UUID.timeOrdered(at: earlier)
        let second = UUID.timeOrdered(at: later)
        #expect(first.timeOrderedMilliseconds == 1_796_000_000_123)
        #expect(second.timeOrderedMilliseconds == 1_796_000_000_125)
        #expect(first.uuidString.lowercased() < second.uuidString.lowercased())
        let text = first.uuidString.lowercased()
        #expect(Array(text)[14] == "7")
        #expect("89ab".contains(Array(text)[19]))
        #expect(UUID.timeOrdered(at: earlier) != first, "random bits differ")
        #expect(UUID().timeOrderedMilliseconds == nil)
    }

    @Test("an event encodes with snake_case keys and its schema version, and decodes to itself")
    func roundTrip() throws {
        let event = AuditEvent(
            time: Date(timeIntervalSince1970: 1_796_000_000.5), kind: .query, tenantID: UUID(), keyID: UUID(),
            queryID: UUID(), requestID: "req-1", node: "data-1", outcome: "answered", status: 200,
            question: .init(
                text: "Mail [email] about it", redacted: true, fingerprint: String(repeating: "a", count: 64)),
            answer: .init(
                text: "Energy is conserved [1].",
                citations: [.init(id: "claim.energy", canonVersion: "base-v1", status: "Proven")], confidence: 0.8,
                modelUsed: "smollm2-135m-instruct", canonVersion: "base-v1", covered: true,
                route: .init(modelClass: "local", complexity: 0.12, reason: "auto")),
            cache: .miss, inputTokens: 900, outputTokens: 20, costNanoDollars: 0,
            timingsMs: ["embed": 3.2, "total": 40.1])
        let data = try AuditEvent.encoder.encode(event)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["schema"] as? Int == AuditEvent.schemaVersion)
        #expect(json["time"] as? String == "2026-11-30T00:53:20.500Z")
        #expect(json["id"] as? String == event.id.lowercased, "ids in lower case")
        #expect(json["tenant_id"] as? String == event.tenantID?.lowercased)
        for key in ["tenant_id", "key_id", "query_id", "request_id", "input_tokens", "timings_ms", "cache"] {
            #expect(json[key] != nil, "\(key)")
        }
        let answer = try #require(json["answer"] as? [String: Any])
        #expect(answer["answer"] as? String == "Energy is conserved [1].")
        #expect(answer["model_used"] as? String == "smollm2-135m-instruct")
        #expect((answer["route"] as? [String: Any])?["class"] as? String == "local")
        #expect(try AuditEvent.decoder.decode(AuditEvent.self, from: data) == event)
        #expect(!String(decoding: data, as: UTF8.self).contains("\n"), "one line per event")
    }

    @Test("a refusal needs no answer; a malformed time is refused when decoding")
    func refusalAndBadTime() throws {
        let refused = AuditEvent(
            kind: .query, tenantID: UUID(), node: "data-1", outcome: "refused", status: 429,
            problemType: "https://zaas.dev/problems/rate-limited")
        let data = try AuditEvent.encoder.encode(refused)
        // Times are kept to the millisecond.
        var decoded = try AuditEvent.decoder.decode(AuditEvent.self, from: data)
        #expect(abs(decoded.time.timeIntervalSince(refused.time)) < 0.001)
        decoded.time = refused.time
        #expect(decoded == refused)
        var json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        json["time"] = "yesterday"
        #expect(throws: DecodingError.self) {
            try AuditEvent.decoder.decode(AuditEvent.self, from: try JSONSerialization.data(withJSONObject: json))
        }
    }

    @Test("an answer's stored JSON decodes as the event's answer: fields beyond the schema are dropped")
    func answerFromStoredJSON() throws {
        let stored = Data(
            #"{"answer":"A [1].","canon_version":"base-v2","citations":[{"canon_version":"base-v2","id":"c.1","kind":"claim","score":0.9,"snippet":"long text","status":"Proven","title":"T"}],"confidence":0.7,"covered":true,"filter":{"changed":false},"model_used":"zora-extractive-local"}"#
                .utf8)
        let answer = try AuditEvent.decoder.decode(AuditEvent.Answer.self, from: stored)
        #expect(answer.citations == [.init(id: "c.1", canonVersion: "base-v2", status: "Proven")])
        let encoded = String(decoding: try AuditEvent.encoder.encode(answer), as: UTF8.self)
        #expect(!encoded.contains("snippet") && !encoded.contains("filter"), "\(encoded)")
    }
}
