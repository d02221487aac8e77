import Configuration
import Foundation
import SystemPackage

/// Builds the configuration reader both planes use: built-in defaults, overridden by an optional
/// JSON file (`ZAAS_CONFIG_FILE`), overridden by `ZAAS_*` environment variables.
///
/// A key `redis.command_timeout_ms` is `{"redis": {"command_timeout_ms": …}}` in the file and
/// `ZAAS_REDIS_COMMAND_TIMEOUT_MS` in the environment.
public enum ConfigurationLoader {
    public static func reader(
        defaults: [AbsoluteConfigKey: ConfigValue],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> ConfigReader {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "zaas")
        ]
        if let path = environment["ZAAS_CONFIG_FILE"], !path.isEmpty {
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(path)))
            } catch {
                throw ConfigurationError.unreadableFile(path: path, reason: "\(error)")
            }
        }
        providers.append(InMemoryProvider(name: "defaults", values: defaults))
        return ConfigReader(providers: providers)
    }
}

/// A setting that is missing, malformed or out of range: a clear startup error naming the setting.
public enum ConfigurationError: Error, CustomStringConvertible, Equatable {
    case unreadableFile(path: String, reason: String)
    case invalid(key: String, value: String, expected: String)
    case missing(key: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "configuration file \(path) (ZAAS_CONFIG_FILE) cannot be read: \(reason)"
        case .invalid(let key, let value, let expected):
            return "setting \(key) (\(Self.environmentName(key))) is \"\(value)\"; expected \(expected)"
        case .missing(let key):
            return "setting \(key) (\(Self.environmentName(key))) is required and not set"
        }
    }

    public static func environmentName(_ key: String) -> String {
        "ZAAS_" + key.uppercased().replacingOccurrences(of: ".", with: "_")
    }
}

extension ConfigReader {
    /// A string setting that must be present and non-empty.
    public func setting(_ key: String, isSecret: Bool = false) throws -> String {
        guard let value = self.string(forKey: ConfigKey(key), isSecret: isSecret), !value.isEmpty else {
            throw ConfigurationError.missing(key: key)
        }
        return value
    }

    /// An integer setting within `range`; a non-number or out-of-range value is an error, not a silent default.
    public func setting(_ key: String, in range: ClosedRange<Int>) throws -> Int {
        let raw = try self.setting(key)
        guard let value = Int(raw.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw ConfigurationError.invalid(
                key: key,
                value: raw,
                expected: "an integer in \(range.lowerBound)...\(range.upperBound)"
            )
        }
        return value
    }

    /// A boolean setting: true/false, yes/no, 1/0.
    public func flag(_ key: String) throws -> Bool {
        let raw = try self.setting(key)
        switch raw.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw ConfigurationError.invalid(key: key, value: raw, expected: "true or false")
        }
    }

    /// A secret given as lower-case hex, at least `minimumBytes` long (for example `keys.pepper`).
    public func hexSecret(_ key: String, minimumBytes: Int) throws -> [UInt8] {
        let text = try self.setting(key, isSecret: true)
        guard let bytes = Hex.decode(text), bytes.count >= minimumBytes else {
            throw ConfigurationError.invalid(
                key: key, value: "(hidden)", expected: "at least \(minimumBytes * 2) lower-case hex digits")
        }
        return bytes
    }

    /// A setting that may be absent; present but empty counts as absent.
    public func optionalSetting(_ key: String, isSecret: Bool = false) -> String? {
        guard let value = self.string(forKey: ConfigKey(key), isSecret: isSecret), !value.isEmpty else {
            return nil
        }
        return value
    }
}
