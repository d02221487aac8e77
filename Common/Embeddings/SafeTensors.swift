import Foundation

/// A read-only, memory-mapped safetensors file: an 8-byte little-endian header length, a JSON
/// header naming each tensor's dtype, shape and byte range, then the data.
///
/// Everything is checked before a tensor is handed out: the header parses, every range lies
/// inside the data and matches its dtype and shape, and ranges do not overlap.
public final class SafeTensors: @unchecked Sendable {
    public struct Tensor: Sendable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        let range: Range<Int>

        public var elementCount: Int { self.shape.reduce(1, *) }
    }

    public let path: String
    public let tensors: [String: Tensor]
    private let data: Data
    private let dataStart: Int

    public init(path: String) throws(SafeTensorsError) {
        self.path = path
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw .unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw .malformed(path: path, reason: "shorter than its header length") }
        let headerLength = data.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 1, headerLength <= 100 << 20, 8 + headerLength <= data.count else {
            throw .malformed(path: path, reason: "header length \(headerLength) does not fit the file")
        }
        let header: [String: Any]
        do {
            guard
                let object = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength)))
                    as? [String: Any]
            else { throw SafeTensorsError.malformed(path: path, reason: "header is not a JSON object") }
            header = object
        } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw .malformed(path: path, reason: "header is not JSON")
        }
        let dataStart = 8 + headerLength
        let dataLength = data.count - dataStart
        var tensors: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                offsets.count == 2, shape.allSatisfy({ $0 >= 0 })
            else { throw .malformed(path: path, reason: "tensor \(name) has no valid dtype, shape or offsets") }
            guard let size = Self.elementSize[dtype] else {
                throw .malformed(path: path, reason: "tensor \(name) has unknown dtype \(dtype)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw .malformed(path: path, reason: "tensor \(name) lies outside the file (truncated?)")
            }
            guard end - begin == shape.reduce(1, *) * size else {
                throw .malformed(
                    path: path, reason: "tensor \(name): \(end - begin) bytes for shape \(shape) of \(dtype)")
            }
            tensors[name] = Tensor(name: name, dtype: dtype, shape: shape, range: begin..<end)
        }
        let ranges = tensors.values.map(\.range).filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        for (previous, next) in zip(ranges, ranges.dropFirst()) where previous.upperBound > next.lowerBound {
            throw .malformed(path: path, reason: "tensors overlap")
        }
        self.data = data
        self.dataStart = dataStart
        self.tensors = tensors
    }

    static let elementSize = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    ]

    /// A float32 tensor's values, checked against the expected shape.
    public func floats(_ name: String, shape expected: [Int]) throws(SafeTensorsError) -> [Float] {
        guard let tensor = self.tensors[name] else { throw .missingTensor(path: self.path, name: name) }
        guard tensor.dtype == "F32" else {
            throw .wrongTensor(path: self.path, name: name, reason: "dtype \(tensor.dtype), expected F32")
        }
        guard tensor.shape == expected else {
            throw .wrongTensor(path: self.path, name: name, reason: "shape \(tensor.shape), expected \(expected)")
        }
        let start = self.dataStart + tensor.range.lowerBound
        return self.data.withUnsafeBytes { raw in
            // Copied out (little-endian float32, as every platform we run on): the data need not
            // be 4-byte aligned in the file, and the model keeps its own contiguous arrays.
            [Float](unsafeUninitializedCapacity: tensor.elementCount) { buffer, count in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: raw[start..<(start + tensor.range.count)]))
                count = tensor.elementCount
            }
        }
    }
}

public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    case missingTensor(path: String, name: String)
    case wrongTensor(path: String, name: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .malformed(let path, let reason): "\(path) is not a valid safetensors file: \(reason)"
        case .missingTensor(let path, let name): "\(path) has no tensor \(name)"
        case .wrongTensor(let path, let name, let reason): "\(path): tensor \(name) has \(reason)"
        }
    }
}
