import Crypto
import Foundation
import HTTPTypes
import Logging
import Shared
import Synchronization
import Testing

@testable import DataPlane

/// The node's side of the audit trail without a network: what the recorder does when the spool
/// is full (`audit.when_full`), and what the shipper does with replies, refusals, failures and
/// damaged records.
@Suite("the audit recorder's full-spool policy and the shipper's handling of replies")
struct AuditRecorderTests {
    static let logger = Logger(label: "test.audit")

    struct Down: Error {}

    static func recorder(_ whenFull: AuditRecorder.WhenFull, maximumBytes: Int) throws -> AuditRecorder {
        let settings = AuditRecorder.Settings(
            directory: AuditSpoolTests.directory(), spool: .init(segmentBytes: 2048, maximumBytes: maximumBytes),
            whenFull: whenFull, fingerprintSecret: SymmetricKey(data: Data(repeating: 1, count: 32)))
        return try AuditRecorder(
            nodeID: "node-t", settings: settings, privacy: QuestionPrivacy(secret: settings.fingerprintSecret),
            logger: Self.logger)
    }

    static func refusal(_ recorder: AuditRecorder, tenant: UUID?) throws {
        try recorder.unanswered(
            .init(outcome: AuditEvent.Outcome.refused, status: 429, problemType: Problem.typeBase + "rate-limited"),
            caller: nil, owner: tenant.map { ($0, UUID()) }, requestID: "r", total: .milliseconds(1))
    }

    @Test(
        "refuse: once the spool is full a query is refused with audit-unavailable; answer: it goes on, the event lost")
    func fullSpool() throws {
        let refusing = try Self.recorder(.refuse, maximumBytes: 8192)
        defer { try? FileManager.default.removeItem(atPath: refusing.settings.directory) }
        var recorded = 0
        let full: Problem? = {
            for _ in 0..<1000 {
                do {
                    try Self.refusal(refusing, tenant: UUID())
                    recorded += 1
                } catch let problem as Problem {
                    return problem
                } catch {
                    return nil
                }
            }
            return nil
        }()
        #expect(full?.slug == "audit-unavailable" && full?.status == .serviceUnavailable)
        #expect(full?.headers[.retryAfter] == "5")
        #expect(recorded > 10 && refusing.spool.totalBytes <= 8192)
        #expect(refusing.recentFailure != nil)
        // Every event recorded before the spool filled is whole and decodes.
        try refusing.spool.seal()
        var events = 0
        for segment in try refusing.spool.sealed() {
            for record in try refusing.spool.contents(of: segment).records {
                let event = try AuditEvent.decoder.decode(AuditEvent.self, from: Data(record))
                #expect(event.outcome == "refused" && event.status == 429 && event.node == "node-t")
                events += 1
            }
        }
        #expect(events == recorded)

        let answering = try Self.recorder(.answer, maximumBytes: 8192)
        defer { try? FileManager.default.removeItem(atPath: answering.settings.directory) }
        for _ in 0..<1000 { try Self.refusal(answering, tenant: UUID()) }
        #expect(answering.spool.totalBytes <= 8192 && answering.recentFailure != nil)
    }

    @Test("refusals of unknown keys stop being recorded at half the spool, so they never crowd out tenants' events")
    func unattributed() throws {
        let recorder = try Self.recorder(.refuse, maximumBytes: 8192)
        defer { try? FileManager.default.removeItem(atPath: recorder.settings.directory) }
        for _ in 0..<1000 { try Self.refusal(recorder, tenant: nil) }
        #expect(recorder.spool.totalBytes <= 4096 + 512)
        // A tenant's event still fits.
        try Self.refusal(recorder, tenant: UUID())
        #expect(recorder.recentFailure == nil)
    }

    @Test(
        "the shipper deletes a segment once the control plane accounted for it, keeps refused events aside, keeps everything when sending fails, skips damaged records"
    )
    func shipping() async throws {
        let recorder = try Self.recorder(.refuse, maximumBytes: 1 << 20)
        let directory = recorder.settings.directory
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for _ in 0..<5 { try Self.refusal(recorder, tenant: UUID()) }

        // The control plane away: nothing is deleted, and the next round sends it all.
        let batches = Mutex<[[UInt8]]>([])
        let failing = Mutex(true)
        let shipper = AuditShipper(spool: recorder.spool, settings: recorder.settings, logger: Self.logger) { batch in
            if failing.withLock({ $0 }) { throw Down() }
            batches.withLock { $0.append(batch) }
            return AuditIngestReply(stored: 4, duplicates: 0, refused: [BatchRefusal(index: 2, reason: "no tenant")])
        }
        #expect(await shipper.shipOnce() == false)
        #expect(try recorder.spool.sealed().count == 1 && shipper.failure != nil)
        failing.withLock { $0 = false }
        #expect(await shipper.shipOnce() == true)
        #expect(try recorder.spool.sealed().isEmpty && shipper.failure == nil)
        let lines = batches.withLock { $0 }.flatMap { $0.split(separator: UInt8(ascii: "\n")) }
        #expect(lines.count == 5)
        // The refused one is kept beside the spool, with its reason.
        let rejected = try FileManager.default.contentsOfDirectory(atPath: directory + "/rejected")
        #expect(rejected.count == 1)
        let kept = try String(contentsOfFile: directory + "/rejected/" + rejected[0], encoding: .utf8)
        #expect(kept.contains(#""reason":"no tenant""#) && kept.contains(String(decoding: lines[2], as: UTF8.self)))

        // A damaged record is skipped; the others are shipped.
        for _ in 0..<3 { try Self.refusal(recorder, tenant: UUID()) }
        try recorder.spool.seal()
        let segment = try #require(try recorder.spool.sealed().first)
        var bytes = try AuditSpool.read(segment.path)
        bytes[AuditSpool.headerBytes + 3] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: segment.path))
        batches.withLock { $0 = [] }
        #expect(await shipper.shipOnce() == true)
        #expect(batches.withLock { $0 }.flatMap { $0.split(separator: UInt8(ascii: "\n")) }.count == 2)
    }
}
