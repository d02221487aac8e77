import Foundation
import TestSupport
import Testing

@testable import Embeddings

@Suite("model files: safetensors validation and clear load errors")
struct ModelFileTests {
    /// Writes a safetensors file with the given header entries and data bytes.
    static func write(header: [String: Any], data: [UInt8], headerLength: UInt64? = nil) throws -> String {
        let json = try JSONSerialization.data(withJSONObject: header)
        var bytes: [UInt8] = []
        var length = (headerLength ?? UInt64(json.count)).littleEndian
        withUnsafeBytes(of: &length) { bytes += $0 }
        bytes += json
        bytes += data
        let path = ConfigFixtures.temporaryDirectory() + ".safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
    }

    @Test("reads float32 tensors and checks dtype, shape and presence")
    func readsTensors() throws {
        let path = try Self.write(
            header: [
                "__metadata__": ["format": "pt"],
                "a": ["dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]],
                "h": ["dtype": "F16", "shape": [2], "data_offsets": [16, 20]],
            ],
            data: Self.floatBytes([1, 2, 3, 4]) + [0, 0, 0, 0])
        let file = try SafeTensors(path: path)
        #expect(try file.floats("a", shape: [2, 2]) == [1, 2, 3, 4])
        #expect(throws: SafeTensorsError.wrongTensor(path: path, name: "a", reason: "shape [2, 2], expected [4]")) {
            try file.floats("a", shape: [4])
        }
        #expect(throws: SafeTensorsError.wrongTensor(path: path, name: "h", reason: "dtype F16, expected F32")) {
            try file.floats("h", shape: [2])
        }
        #expect(throws: SafeTensorsError.missingTensor(path: path, name: "b")) { try file.floats("b", shape: [1]) }
    }

    @Test("a truncated, overlapping, mis-sized or garbage file is refused with the reason")
    func refusesBadFiles() throws {
        let cases: [(String, String)] = [
            (
                try Self.write(header: ["a": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]]], data: [0, 0]),
                "outside the file"
            ),
            (
                try Self.write(
                    header: ["a": ["dtype": "F32", "shape": [3], "data_offsets": [0, 16]]],
                    data: .init(repeating: 0, count: 16)),
                "16 bytes for shape [3]"
            ),
            (
                try Self.write(
                    header: [
                        "a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
                        "b": ["dtype": "F32", "shape": [2], "data_offsets": [4, 12]],
                    ], data: .init(repeating: 0, count: 12)), "overlap"
            ),
            (
                try Self.write(header: ["a": ["dtype": "Q4", "shape": [2], "data_offsets": [0, 1]]], data: [0]),
                "unknown dtype"
            ),
            (try Self.write(header: [:], data: [], headerLength: 1 << 40), "header length"),
        ]
        for (path, reason) in cases {
            do {
                _ = try SafeTensors(path: path)
                Issue.record("\(reason): accepted")
            } catch {
                #expect(error.description.contains(reason), "\(error)")
            }
        }
        let garbage = ConfigFixtures.temporaryDirectory()
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: SafeTensorsError.self) { try SafeTensors(path: garbage) }
        #expect(throws: SafeTensorsError.self) { try SafeTensors(path: "/nonexistent/model.safetensors") }
    }

    @Test("a model folder with a missing or truncated weights file fails to load, saying which")
    func modelFolder() throws {
        let source = TestEnvironment.modelDirectory
        let folder = ConfigFixtures.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: folder + "/1_Pooling", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["config.json", "vocab.txt", "tokenizer_config.json", "1_Pooling/config.json"] {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: folder + "/" + name)
        }
        #expect(throws: ModelLoadError.self) { try SentenceModel(directory: folder) }
        let weights = try Data(contentsOf: URL(fileURLWithPath: source + "/model.safetensors"))
        try weights.prefix(weights.count / 3).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
        do {
            _ = try SentenceModel(directory: folder)
            Issue.record("a truncated model loaded")
        } catch {
            #expect(error.description.contains("outside the file (truncated?)"), "\(error)")
        }
        #expect(throws: ModelLoadError.missingFile("/nonexistent/config.json")) {
            try SentenceModel(directory: "/nonexistent")
        }
    }
}

@Suite("encoder numerics")
struct EncoderNumericsTests {
    @Test("the float32 erf used by GELU is within 5e-7 of the true erf everywhere")
    func erfAccuracy() {
        var worst: Double = 0
        var x = -8.0
        while x <= 8 {
            let approximate = Double(BertEncoder.erf32(Float(x)))
            worst = max(worst, abs(approximate - erf(Double(Float(x)))))
            x += 1e-4
        }
        #expect(worst < 5e-7, "worst error \(worst)")
        #expect(BertEncoder.erf32(0) == 0)
        #expect(BertEncoder.erf32(100) == BertEncoder.erf32(4))
    }
}
