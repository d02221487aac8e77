/// Migration 21: compliance exports of the audit trail, and erasure (docs/audit.md, "Export"). A request is a
/// row of `audit_exports`; a control plane's worker claims it (a lease, so a crashed worker's job
/// is taken up again), writes the files in 1 MiB parts into `audit_export_files` and signs the
/// manifest. Both tables are the tenant's, under forced row-level security; the claim goes
/// through a SECURITY DEFINER function, since the worker does not know the tenant beforehand.
enum AuditExportSchema {
    static let tenantMatches = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"

    static let statements: [String] =
        [
            """
            CREATE TABLE audit_exports (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id uuid NOT NULL REFERENCES tenants (id),
                -- `operator:<id>` or `admin:<id>`: who asked.
                requested_by text NOT NULL,
                period_from timestamptz NOT NULL,
                period_to timestamptz NOT NULL CHECK (period_to > period_from),
                status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
                events bigint NOT NULL DEFAULT 0,
                manifest text,
                signature text,
                error text,
                lease_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                finished_at timestamptz
            )
            """,
            "CREATE INDEX audit_exports_waiting ON audit_exports (created_at) WHERE status IN ('queued', 'running')",
            """
            CREATE TABLE audit_export_files (
                export_id uuid NOT NULL REFERENCES audit_exports (id) ON DELETE CASCADE,
                tenant_id uuid NOT NULL REFERENCES tenants (id),
                name text NOT NULL CHECK (name IN ('events.ndjson.gz', 'events.csv')),
                part integer NOT NULL CHECK (part >= 0),
                bytes bytea NOT NULL,
                PRIMARY KEY (export_id, name, part)
            )
            """,
        ]
        + ["audit_exports", "audit_export_files"].flatMap { table in
            [
                "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE \(table) FORCE ROW LEVEL SECURITY",
                """
                CREATE POLICY tenant_isolation ON \(table)
                    USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                    WITH CHECK (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                "CREATE POLICY definer_functions ON \(table) TO CURRENT_USER USING (true) WITH CHECK (true)",
                "REVOKE TRUNCATE ON \(table) FROM {{app_role}}",
            ]
        }
        + [
            // The oldest export waiting (or whose worker's lease ran out), leased for p_seconds.
            """
            CREATE FUNCTION zaas_audit_export_claim(p_seconds integer)
            RETURNS TABLE (id uuid, tenant_id uuid, period_from timestamptz, period_to timestamptz)
                LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    UPDATE audit_exports e SET status = 'running', lease_until = now() + make_interval(secs => p_seconds)
                    WHERE e.id = (
                        SELECT w.id FROM audit_exports w
                        WHERE w.status = 'queued' OR (w.status = 'running' AND w.lease_until < now())
                        ORDER BY w.created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                    RETURNING e.id, e.tenant_id, e.period_from, e.period_to
                $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_audit_export_claim(integer) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION zaas_audit_export_claim(integer) TO {{app_role}}",
            // An operator erases a tenant's events of a period: the rows go, and the erasure itself
            // is kept in the operator audit (who, which tenant, which period, how many). Only on the
            // operator path (`app.operator_id` set); returns how many events went.
            """
            CREATE FUNCTION zaas_audit_erase(p_tenant uuid, p_from timestamptz, p_to timestamptz) RETURNS bigint
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    operator uuid := zaas_current_operator();
                    erased bigint;
                BEGIN
                    IF operator IS NULL THEN
                        RAISE EXCEPTION 'only operators erase audit events' USING ERRCODE = '42501';
                    END IF;
                    DELETE FROM audit_events WHERE tenant_id = p_tenant AND time >= p_from AND time < p_to;
                    GET DIAGNOSTICS erased = ROW_COUNT;
                    INSERT INTO operator_audit (operator_id, tenant_id, table_name, operation, row_id)
                    VALUES (operator, p_tenant, 'audit_events', 'erase',
                            p_from::text || '/' || p_to::text || ': ' || erased || ' events');
                    RETURN erased;
                END
                $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_audit_erase(uuid, timestamptz, timestamptz) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION zaas_audit_erase(uuid, timestamptz, timestamptz) TO {{app_role}}",
        ]
}
