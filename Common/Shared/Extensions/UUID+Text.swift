import Foundation

extension UUID {
    /// The lower-case text form: what the APIs, Redis keys and logs use (`uuidString` is upper case).
    public var lowercased: String { self.uuidString.lowercased() }
}
