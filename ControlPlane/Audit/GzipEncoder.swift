import CZlib

/// A gzip stream (RFC 1952) written piece by piece: what goes in is compressed and handed out as
/// it is produced, so an export of millions of events never sits in memory whole.
final class GzipEncoder {
    enum Failure: Error {
        case zlib(Int32)
    }

    /// On the heap: zlib's state points back at its stream and checks it has not moved.
    private let stream: UnsafeMutablePointer<z_stream>

    init(level: Int32 = 6) throws {
        self.stream = .allocate(capacity: 1)
        self.stream.initialize(to: z_stream())
        // 15 + 16: a 32 KiB window, with gzip's header and trailer.
        let status = deflateInit2_(
            self.stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
            Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            self.stream.deallocate()
            throw Failure.zlib(status)
        }
    }

    deinit {
        deflateEnd(self.stream)
        self.stream.deallocate()
    }

    /// Compresses `input`; with `finish`, ends the stream (its trailer included).
    func compress(_ input: [UInt8], finish: Bool = false) throws -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        try input.withUnsafeBufferPointer { source in
            self.stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
            self.stream.pointee.avail_in = uInt(source.count)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { target in
                    self.stream.pointee.next_out = target.baseAddress
                    self.stream.pointee.avail_out = uInt(target.count)
                    let status = deflate(self.stream, finish ? Z_FINISH : Z_NO_FLUSH)
                    return (status, target.count - Int(self.stream.pointee.avail_out))
                }
                guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                    throw Failure.zlib(status)
                }
                output += chunk[..<produced]
                if finish ? status == Z_STREAM_END : self.stream.pointee.avail_in == 0 && produced < chunk.count {
                    break
                }
            }
        }
        return output
    }
}
