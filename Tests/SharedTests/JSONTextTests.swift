import Foundation
import Testing

@testable import Shared

@Suite("JSON written by hand")
struct JSONTextTests {
    @Test("strings are escaped so that a JSON parser reads them back exactly")
    func strings() throws {
        for text in ["plain", "quote \" and \\ backslash", "lines\n\r\ttab", "control \u{01}\u{1f}", "ünïcødé 🚀", ""] {
            var bytes = Array("[".utf8)
            JSONText.appendString(text, to: &bytes)
            bytes += Array("]".utf8)
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String])
            #expect(parsed == [text])
        }
    }

    @Test("times are written in UTC to the millisecond, as the audit decoder reads them, for any day")
    func times() throws {
        let formatter = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        let samples: [Int64] =
            [0, 951_782_400_000, 1_796_000_000_123, 4_102_444_799_999, -1]
            + (0..<500).map { _ in Int64.random(in: 0...4_000_000_000_000, using: &generator) }
        for milliseconds in samples {
            var bytes = [UInt8]()
            JSONText.appendTime(milliseconds: milliseconds, to: &bytes)
            let text = String(decoding: bytes.dropFirst().dropLast(), as: UTF8.self)
            // Foundation's formatter truncates the binary fraction (.316 may print as .315): the
            // seconds are compared as text, the milliseconds as the parsed value.
            let expected = Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(formatter)
            #expect(text.prefix(19) == expected.prefix(19), "\(milliseconds)")
            #expect(text.count == 24 && text.hasSuffix("Z"))
            let parsed = try Date(text, strategy: formatter)
            #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == milliseconds, "\(text)")
        }
    }
}

@Suite("JSON members left out by name")
struct JSONMemberRemovalTests {
    func removing(_ names: Set<String>, _ json: String) -> String {
        String(decoding: JSONText.removingMembers(named: names, from: Array(json.utf8)), as: UTF8.self)
    }

    @Test(
        "named members go at any depth, first, middle or last, whatever their value; the rest is copied byte for byte",
        arguments: [
            (#"{"a":1,"snippet":"x","b":2}"#, #"{"a":1,"b":2}"#),
            (#"{"snippet":"x","b":2}"#, #"{"b":2}"#),
            (#"{"a":1,"snippet":"x"}"#, #"{"a":1}"#),
            (#"{"snippet":"x"}"#, #"{}"#),
            (
                #"{"c":[{"id":"e1","snippet":"s \" } ] , \\","score":0.5},{"snippet":{"deep":[1,2]},"id":"e2"}]}"#,
                #"{"c":[{"id":"e1"},{"id":"e2"}]}"#
            ),
            (
                #"{"filter":{"dropped":{"snippet":1}},"answer":"ok","n":null,"t":true,"e":-1.5e-3}"#,
                #"{"answer":"ok","n":null,"t":true,"e":-1.5e-3}"#
            ),
            (#" { "a" : [ ] , "score" : 1 , "b" : { } } "#, #"{"a":[],"b":{}}"#),
            (#"{"a":"snippet","b":["snippet"]}"#, #"{"a":"snippet","b":["snippet"]}"#),
        ])
    func removes(json: String, expected: String) throws {
        let result = self.removing(["snippet", "score", "filter"], json)
        #expect(result == expected)
        // Still JSON, and equal to what a parser makes of the expected text.
        let parsed = try JSONSerialization.jsonObject(with: Data(result.utf8)) as? NSDictionary
        let wanted = try JSONSerialization.jsonObject(with: Data(expected.utf8)) as? NSDictionary
        #expect(parsed == wanted)
    }

    @Test(
        "what is not well-formed comes back unchanged",
        arguments: [
            #"{"a":1,"snippet":"x""#, #"{"a" 1}"#, #"{"a":1,}"#, #"{"a":[1,2}"#, #"{"a":"x}"#, #"{"a":1} x"#, "",
        ])
    func malformed(json: String) {
        #expect(self.removing(["snippet"], json) == json)
    }
}
