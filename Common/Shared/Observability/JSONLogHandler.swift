import Foundation
import Logging
import Synchronization

/// A swift-log handler that writes one JSON object per line: `ts`, `level`, `label`, `msg`, then
/// the metadata as top-level fields. What log shippers (Vector, Fluent Bit, Loki) read without parsing rules.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: JSONLogSink

    public init(label: String, level: Logger.Level, sink: JSONLogSink = .standardOutput) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: Logger.MetadataValue] = self.metadata
        if let provided = self.metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        let line = Self.render(
            timestamp: Date(),
            level: event.level,
            label: self.label,
            message: event.message.description,
            fields: fields
        )
        self.sink.write(line)
    }

    /// UTC with milliseconds: `2026-11-28T01:47:11.722Z`.
    static let timestampFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func render(
        timestamp: Date,
        level: Logger.Level,
        label: String,
        message: String,
        fields: [String: Logger.MetadataValue]
    ) -> String {
        var out =
            "{\"ts\":\"\(timestamp.formatted(Self.timestampFormat))\""
        out += ",\"level\":\"\(level.rawValue)\",\"label\":"
        appendJSONString(label, to: &out)
        out += ",\"msg\":"
        appendJSONString(message, to: &out)
        for key in fields.keys.sorted() where !["ts", "level", "label", "msg"].contains(key) {
            out += ","
            appendJSONString(key, to: &out)
            out += ":"
            appendJSON(fields[key]!, to: &out)
        }
        out += "}\n"
        return out
    }

    private static func appendJSON(_ value: Logger.MetadataValue, to out: inout String) {
        switch value {
        case .string(let string): appendJSONString(string, to: &out)
        case .stringConvertible(let convertible): appendJSONString(convertible.description, to: &out)
        case .array(let values):
            out += "["
            for (index, element) in values.enumerated() {
                if index > 0 { out += "," }
                appendJSON(element, to: &out)
            }
            out += "]"
        case .dictionary(let dictionary):
            out += "{"
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                appendJSONString(key, to: &out)
                out += ":"
                appendJSON(dictionary[key]!, to: &out)
            }
            out += "}"
        }
    }

    static func appendJSONString(_ string: String, to out: inout String) {
        out += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// Where JSON log lines go. One lock per sink keeps lines whole when many tasks log at once.
public final class JSONLogSink: Sendable {
    private let write: Mutex<(String) -> Void>

    public init(_ write: @escaping @Sendable (String) -> Void) {
        self.write = Mutex(write)
    }

    /// Unbuffered writes to file descriptor 1, so a crash loses no line already logged.
    public static let standardOutput = JSONLogSink { line in
        var line = line
        line.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(STDOUT_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }

    func write(_ line: String) {
        self.write.withLock { $0(line) }
    }
}

extension LoggingSystem {
    /// Installs JSON line logging for the whole process. Call once, from `main`.
    public static func bootstrapJSON(level: Logger.Level) {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
    }
}
