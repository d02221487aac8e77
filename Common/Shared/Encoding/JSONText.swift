/// JSON written by hand on paths where an encoder costs too much (the audit record of every
/// query): strings quoted and escaped as RFC 8259 requires.
public enum JSONText {
    /// Appends `text` as a JSON string, quotes included.
    public static func appendString(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends `,"name":` (without the comma for the first field of an object: `first`).
    public static func appendKey(_ name: StaticString, to bytes: inout [UInt8], first: Bool = false) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes += [UInt8(ascii: "\""), UInt8(ascii: ":")]
    }
}

extension JSONText {
    /// Appends a Unix time in milliseconds as `"2026-12-03T09:15:02.123Z"` (UTC), the form
    /// `AuditEvent.decoder` reads, without a date formatter.
    public static func appendTime(milliseconds: Int64, to bytes: inout [UInt8]) {
        let days = milliseconds >= 0 ? milliseconds / 86_400_000 : (milliseconds - 86_399_999) / 86_400_000
        let inDay = milliseconds - days * 86_400_000
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var value = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(value / divisor))
                value %= divisor
                divisor /= 10
            }
        }
        bytes.append(UInt8(ascii: "\""))
        digits(year, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(month, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(day, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(inDay / 3_600_000, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(inDay / 60_000 % 60, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(inDay / 1000 % 60, 2)
        bytes.append(UInt8(ascii: "."))
        digits(inDay % 1000, 3)
        bytes += [UInt8(ascii: "Z"), UInt8(ascii: "\"")]
    }
}

extension JSONText {
    /// `json` without the members named in `names`, at any depth (a member's whole value goes),
    /// copied otherwise byte for byte. For JSON this code wrote itself (a cached answer's stored
    /// bytes): what is not well-formed, or a key with escapes that matches a name only once
    /// unescaped, comes back unchanged or keeps that member; nothing is ever invented.
    public static func removingMembers(named names: Set<String>, from json: [UInt8]) -> [UInt8] {
        let names = Set(names.map { Array($0.utf8) })
        var filter = MemberFilter(input: json, names: names)
        filter.output.reserveCapacity(json.count)
        guard filter.value(write: true), filter.skipWhitespace(), filter.index == json.count else { return json }
        return filter.output
    }

    /// A single pass over JSON text that copies it, leaving out named members.
    private struct MemberFilter {
        let input: [UInt8]
        let names: Set<[UInt8]>
        var index = 0
        var output: [UInt8] = []

        init(input: [UInt8], names: Set<[UInt8]>) {
            self.input = input
            self.names = names
        }

        /// Skips whitespace (always true, for use in conditions).
        mutating func skipWhitespace() -> Bool {
            while self.index < self.input.count {
                switch self.input[self.index] {
                case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
                default: return true
                }
            }
            return true
        }

        var current: UInt8? { self.index < self.input.count ? self.input[self.index] : nil }

        /// One value, copied when `write`; false when it is not well-formed.
        mutating func value(write: Bool) -> Bool {
            _ = self.skipWhitespace()
            switch self.current {
            case UInt8(ascii: "{"): return self.object(write: write)
            case UInt8(ascii: "["): return self.array(write: write)
            case UInt8(ascii: "\""): return self.string(write: write) != nil
            case nil: return false
            default:
                // A number, true, false or null: up to the next delimiter.
                let start = self.index
                scalar: while let byte = self.current {
                    switch byte {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D: break scalar
                    default: self.index += 1
                    }
                }
                if write { self.output += self.input[start..<self.index] }
                return self.index > start
            }
        }

        /// A string (the quotes included), copied when `write`; its raw bytes between the quotes.
        mutating func string(write: Bool) -> ArraySlice<UInt8>? {
            let start = self.index
            self.index += 1
            while let byte = self.current {
                self.index += 1
                if byte == UInt8(ascii: "\\") {
                    self.index += 1
                } else if byte == UInt8(ascii: "\"") {
                    if write { self.output += self.input[start..<self.index] }
                    return self.input[(start + 1)..<(self.index - 1)]
                }
            }
            return nil
        }

        mutating func object(write: Bool) -> Bool {
            self.index += 1
            if write { self.output.append(UInt8(ascii: "{")) }
            var written = 0
            _ = self.skipWhitespace()
            if self.current == UInt8(ascii: "}") {
                self.index += 1
                if write { self.output.append(UInt8(ascii: "}")) }
                return true
            }
            while true {
                _ = self.skipWhitespace()
                guard self.current == UInt8(ascii: "\"") else { return false }
                let keyStart = self.index
                guard let key = self.string(write: false) else { return false }
                let keep = !self.names.contains(Array(key))
                _ = self.skipWhitespace()
                guard self.current == UInt8(ascii: ":") else { return false }
                self.index += 1
                if write && keep {
                    if written > 0 { self.output.append(UInt8(ascii: ",")) }
                    self.output += self.input[keyStart..<(keyStart + key.count + 2)]
                    self.output.append(UInt8(ascii: ":"))
                    written += 1
                }
                guard self.value(write: write && keep) else { return false }
                _ = self.skipWhitespace()
                switch self.current {
                case UInt8(ascii: ","): self.index += 1
                case UInt8(ascii: "}"):
                    self.index += 1
                    if write { self.output.append(UInt8(ascii: "}")) }
                    return true
                default: return false
                }
            }
        }

        mutating func array(write: Bool) -> Bool {
            self.index += 1
            if write { self.output.append(UInt8(ascii: "[")) }
            _ = self.skipWhitespace()
            if self.current == UInt8(ascii: "]") {
                self.index += 1
                if write { self.output.append(UInt8(ascii: "]")) }
                return true
            }
            var first = true
            while true {
                if write && !first { self.output.append(UInt8(ascii: ",")) }
                first = false
                guard self.value(write: write) else { return false }
                _ = self.skipWhitespace()
                switch self.current {
                case UInt8(ascii: ","): self.index += 1
                case UInt8(ascii: "]"):
                    self.index += 1
                    if write { self.output.append(UInt8(ascii: "]")) }
                    return true
                default: return false
                }
            }
        }
    }
}
