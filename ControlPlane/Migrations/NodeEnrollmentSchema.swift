/// Migration 27: nodes may enroll themselves (`POST /internal/v1/enroll` with the fleet's
/// enrollment secret, `nodes.enrollment_secret`), as pods of an autoscaled Deployment do.
/// Credentials they obtain are marked `enrolled`: such a node hands its credential back when it
/// stops, and one whose node has not been seen for `nodes.enrolled_retire_after_seconds` is
/// revoked (a pod that was killed). Credentials operators issue are never revoked automatically.
enum NodeEnrollmentSchema {
    static let statements: [String] = [
        "ALTER TABLE node_credentials ADD COLUMN enrolled boolean NOT NULL DEFAULT false",
        """
        CREATE INDEX node_credentials_enrolled_active ON node_credentials (created_at)
            WHERE enrolled AND revoked_at IS NULL
        """,
    ]
}
