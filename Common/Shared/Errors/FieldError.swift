import HTTPTypes

/// One invalid field of a request.
public struct FieldError: Sendable, Equatable {
    public var field: String
    public var message: String

    public init(_ field: String, _ message: String) {
        self.field = field
        self.message = message
    }
}

extension Problem {
    /// Input that parsed but is not acceptable (422); `errors` lists every problem, by field.
    public static func validation(_ errors: [FieldError]) -> Problem {
        .fieldErrors(slug: "validation-failed", title: "Unprocessable Content", status: .unprocessableContent, errors)
    }

    /// A problem whose `detail` lists every invalid field, and whose `errors` member has them as
    /// `{field, message}` objects, in the order given.
    public static func fieldErrors(
        slug: String, title: String, status: HTTPResponse.Status, _ errors: [FieldError]
    ) -> Problem {
        Problem(
            slug: slug, title: title, status: status,
            detail: errors.map { "\($0.field): \($0.message)" }.joined(separator: "; "),
            extensions: [
                "errors": .array(errors.map { .object(["field": .string($0.field), "message": .string($0.message)]) })
            ])
    }
}
