import Crypto

/// One schema change. Statements run in order inside one transaction; `{{app_role}}` stands for
/// the application role's name, so grants follow whatever role the deployment uses.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let statements: [String]

    public init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }

    /// SHA-256 of the statements as written (before the role is filled in): an applied
    /// migration whose text later changed is caught at start.
    public var checksum: String {
        var hasher = SHA256()
        for statement in self.statements {
            hasher.update(data: Array(statement.utf8))
            hasher.update(data: [0])
        }
        return hasher.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
