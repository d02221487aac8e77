import CHiredis
import NIOCore

/// Decodes RESP replies with hiredis's reader: bytes go in as they arrive, whole replies come out.
final class RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis could not allocate a reader") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(self.reader)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if buffer.readableBytes > 0 {
            let status = buffer.withUnsafeReadableBytes { bytes in
                redisReaderFeed(self.reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
            }
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            guard status == REDIS_OK else { throw RedisError.protocolError(self.readerError) }
        }
        // The reader may hold several complete replies: hand them all on now, since the
        // decoder is not called again until more bytes arrive.
        while true {
            var reply: UnsafeMutableRawPointer?
            guard redisReaderGetReply(self.reader, &reply) == REDIS_OK else {
                throw RedisError.protocolError(self.readerError)
            }
            guard let reply else { return .needMoreData }
            let value = Self.value(of: reply.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(reply)
            context.fireChannelRead(self.wrapInboundOut(value))
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }

    private var readerError: String {
        withUnsafeBytes(of: self.reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func value(of reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let node = reply.pointee
        func bytes() -> [UInt8] {
            guard let str = node.str, node.len > 0 else { return [] }
            return [UInt8](UnsafeRawBufferPointer(start: str, count: node.len))
        }
        switch node.type {
        case REDIS_REPLY_STRING:
            return .bulkString(bytes())
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(node.integer)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var values: [RESPValue] = []
            values.reserveCapacity(node.elements)
            for index in 0..<node.elements {
                values.append(value(of: node.element[index]!))
            }
            return .array(values)
        default:
            return .error("unknown reply type \(node.type)")
        }
    }
}

/// Formats commands as RESP with hiredis's `redisFormatCommandArgv`.
enum RESPCommandFormatter {
    static func format(_ arguments: [RedisArgument]) throws -> ByteBuffer {
        precondition(!arguments.isEmpty, "a Redis command needs at least its name")
        var lengths = arguments.map(\.bytes.count)
        var storage: [UInt8] = []
        storage.reserveCapacity(lengths.reduce(1, +))
        for argument in arguments { storage.append(contentsOf: argument.bytes) }
        storage.append(0)  // a valid base address even when every argument is empty

        var target: UnsafeMutablePointer<CChar>?
        let length = storage.withUnsafeBufferPointer { base -> Int32 in
            let start = UnsafeRawPointer(base.baseAddress!)
            var offset = 0
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(lengths.count)
            for length in lengths {
                pointers.append((start + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            return redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, &lengths)
        }
        guard length > 0, let target else { throw RedisError.protocolError("could not format command") }
        defer { redisFreeCommand(target) }
        return ByteBuffer(bytes: UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
}
