/// Migration 3: the narrow gates that must look across tenants before any scope is known —
/// finding an account by email at login, resolving a session token, creating the bootstrap
/// operator. Each is a SECURITY DEFINER function owned by the owner role, returns only what its
/// caller needs, and is the only such path; everything else runs under a tenant or operator scope.
enum AccessFunctions {
    static let statements: [String] = [
        // The owner (only through these functions) sees rows despite FORCE ROW LEVEL SECURITY.
        "CREATE POLICY definer_functions ON operators TO CURRENT_USER USING (true) WITH CHECK (true)",
        "CREATE POLICY definer_functions ON admin_users TO CURRENT_USER USING (true) WITH CHECK (true)",
        "CREATE POLICY definer_functions ON tenants TO CURRENT_USER USING (true) WITH CHECK (true)",
        "CREATE POLICY definer_functions ON admin_sessions TO CURRENT_USER USING (true) WITH CHECK (true)",
        "CREATE POLICY definer_functions ON operator_sessions TO CURRENT_USER USING (true) WITH CHECK (true)",
        """
        CREATE FUNCTION zaas_login_candidate(p_email text)
        RETURNS TABLE (kind text, account_id uuid, tenant_id uuid, password_hash text, role text,
                       account_status text, tenant_status text, locked_until timestamptz)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT 'operator', o.id, NULL::uuid, o.password_hash, 'operator', o.status, NULL::text, o.locked_until
                FROM operators o WHERE o.email = lower(p_email)
                UNION ALL
                SELECT 'admin', u.id, u.tenant_id, u.password_hash, u.role, u.status, t.status, u.locked_until
                FROM admin_users u JOIN tenants t ON t.id = u.tenant_id WHERE u.email = lower(p_email)
            $$
        """,
        """
        CREATE FUNCTION zaas_resolve_session(p_digest bytea)
        RETURNS TABLE (kind text, session_id uuid, account_id uuid, tenant_id uuid, role text,
                       expires_at timestamptz, revoked_at timestamptz, account_status text, tenant_status text)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT 'operator', s.id, o.id, NULL::uuid, 'operator', s.expires_at, s.revoked_at, o.status, NULL::text
                FROM operator_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.token_digest = p_digest
                UNION ALL
                SELECT 'admin', s.id, u.id, u.tenant_id, u.role, s.expires_at, s.revoked_at, u.status, t.status
                FROM admin_sessions s JOIN admin_users u ON u.id = s.admin_user_id JOIN tenants t ON t.id = u.tenant_id
                WHERE s.token_digest = p_digest
            $$
        """,
        """
        CREATE FUNCTION zaas_bootstrap_operator(p_email text, p_password_hash text) RETURNS boolean
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            BEGIN
                INSERT INTO operators (email, password_hash) VALUES (lower(p_email), p_password_hash)
                ON CONFLICT (email) DO NOTHING;
                RETURN FOUND;
            END
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_login_candidate(text) FROM PUBLIC",
        "REVOKE EXECUTE ON FUNCTION zaas_resolve_session(bytea) FROM PUBLIC",
        "REVOKE EXECUTE ON FUNCTION zaas_bootstrap_operator(text, text) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_login_candidate(text) TO {{app_role}}",
        "GRANT EXECUTE ON FUNCTION zaas_resolve_session(bytea) TO {{app_role}}",
        "GRANT EXECUTE ON FUNCTION zaas_bootstrap_operator(text, text) TO {{app_role}}",
    ]
}
