import Logging
import PostgresNIO

/// Refuses to serve as a role that could step around row-level security: a superuser, a role
/// with BYPASSRLS, or one that owns tables (owners skip RLS unless it is forced).
public enum ApplicationRoleCheck {
    public struct Violation: Error, CustomStringConvertible {
        public let role: String
        public let reasons: [String]
        public var description: String {
            "refusing to serve as database role \(role): " + reasons.joined(separator: "; ")
        }
    }

    public static func verify(client: PostgresClient, logger: Logger) async throws {
        let rows = try await client.queryRows(
            """
            SELECT r.rolname, r.rolsuper, r.rolbypassrls,
                   (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid
                        AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace
                            WHERE nspname IN ('pg_catalog', 'information_schema') OR nspname LIKE 'pg_toast%')),
                   (SELECT count(*) FROM pg_namespace n WHERE n.nspowner = r.oid)
            FROM pg_roles r WHERE r.rolname = current_user
            """,
            logger: logger
        )
        for try await (role, isSuperuser, bypassesRLS, ownedRelations, ownedSchemas) in rows.decode(
            (String, Bool, Bool, Int, Int).self
        ) {
            var reasons: [String] = []
            if isSuperuser { reasons.append("it is a superuser") }
            if bypassesRLS { reasons.append("it has BYPASSRLS") }
            if ownedRelations > 0 { reasons.append("it owns \(ownedRelations) relations") }
            if ownedSchemas > 0 { reasons.append("it owns \(ownedSchemas) schemas") }
            if !reasons.isEmpty { throw Violation(role: role, reasons: reasons) }
        }
    }
}
