/// What a new password must be: 12 to 256 characters, not a well-known password, not the email.
enum PasswordPolicy {
    static let minimumLength = 12
    static let maximumLength = 256

    /// Common passwords long enough to pass the length rule (from public breach top lists).
    static let common: Set<String> = [
        "123456789012", "1234567890123", "password1234", "password12345", "passwordpassword",
        "qwertyuiop12", "qwertyuiopasdf", "iloveyou1234", "administrator", "adminadmin123",
        "letmein12345", "welcome12345", "changeme1234", "trustno1trustno1", "111111111111",
        "000000000000", "abcdefghijkl", "abc123abc123", "football1234", "baseball1234",
        "superman1234", "sunshine1234", "princess1234", "qwerty123456", "1q2w3e4r5t6y",
        "zaq12wsxcde3", "correcthorsebatterystaple", "passw0rdpassw0rd", "p@ssw0rd1234", "monkey123456",
    ]

    /// Problems with `password`, empty when it is acceptable.
    static func problems(password: String, email: String) -> [String] {
        var problems: [String] = []
        // Code points, not grapheme clusters: one cluster can hold any number of combining marks.
        let length = password.unicodeScalars.count
        if length < minimumLength { problems.append("must be at least \(minimumLength) characters") }
        if length > maximumLength { problems.append("must be at most \(maximumLength) characters") }
        if password.unicodeScalars.contains(where: { $0.value == 0 }) { problems.append("must not contain U+0000") }
        let lowered = password.lowercased()
        if common.contains(lowered) { problems.append("is a commonly used password") }
        if let local = email.lowercased().split(separator: "@").first, lowered.contains(local), local.count >= 4 {
            problems.append("must not contain the email's name")
        }
        return problems
    }
}
