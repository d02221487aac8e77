/// Migration 11: the tier's published limit is the tenant's, and keys are capped per tier.
///
/// Before this, only the per-key bucket applied unless an operator set a tenant-wide limit in the
/// quota policy, so a Free tenant with 100 keys had 1,000 queries an hour. Now every tenant has a
/// tenant-wide bucket: the policy's `tenant_queries_per_hour` where set, else the tier's
/// `queries_per_hour` (Free 10 per hour means 10 per tenant per hour). And a tenant may hold at
/// most `max_active_keys` keys that are neither revoked nor expired (tier, or quota policy).
enum TierLimitsSchema {
    static let statements: [String] = [
        "ALTER TABLE tiers ADD COLUMN max_active_keys integer NOT NULL DEFAULT 10 CHECK (max_active_keys BETWEEN 1 AND 100000)",
        """
        UPDATE tiers SET max_active_keys = CASE id
            WHEN 'free' THEN 3 WHEN 'pro' THEN 20 WHEN 'team' THEN 100 WHEN 'enterprise' THEN 1000
            ELSE max_active_keys END
        """,
        "ALTER TABLE quota_policies ADD COLUMN max_active_keys integer CHECK (max_active_keys BETWEEN 1 AND 100000)",
        """
        CREATE OR REPLACE FUNCTION zaas_config_tenants(p_ids uuid[], p_tiers text[])
        RETURNS TABLE (id uuid, slug text, status text, tier_id text, queries_per_hour integer,
                       tenant_queries_per_hour integer, model_classes text[], max_citations integer,
                       cache_ttl_seconds integer, audit_retention_days integer, canon_updates_allowed boolean)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT t.id, t.slug, t.status, t.tier_id,
                       coalesce(q.queries_per_hour, r.queries_per_hour),
                       coalesce(q.tenant_queries_per_hour, r.queries_per_hour),
                       coalesce(q.model_classes, r.model_classes),
                       coalesce(q.max_citations, r.max_citations),
                       coalesce(q.cache_ttl_seconds, r.cache_ttl_seconds),
                       coalesce(q.audit_retention_days, r.audit_retention_days),
                       coalesce(q.canon_updates_allowed, r.canon_updates_allowed)
                FROM tenants t
                JOIN tiers r ON r.id = t.tier_id
                LEFT JOIN quota_policies q ON q.tenant_id = t.id
                WHERE t.status <> 'deleted'
                  AND ((p_ids IS NULL AND p_tiers IS NULL) OR t.id = ANY (p_ids) OR t.tier_id = ANY (p_tiers))
                ORDER BY t.id
            $$
        """,
    ]
}

/// Migration 12: canon artifacts are reached only through the SECURITY DEFINER functions that
/// serve them (nodes fetch by hash, builds store them); the application role cannot read the
/// table, so no tenant scope can list another tenant's artifacts.
enum ArtifactScopeSchema {
    static let statements: [String] = [
        "REVOKE ALL ON canon_artifacts FROM {{app_role}}",
        "ALTER TABLE canon_artifacts ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE canon_artifacts FORCE ROW LEVEL SECURITY",
        "CREATE POLICY definer_functions ON canon_artifacts TO CURRENT_USER USING (true) WITH CHECK (true)",
    ]
}

/// Migration 13: an operator moves the configuration version past a number (after a database
/// restore put it behind what nodes hold, which they refuse as a replay). The next version is
/// past both, and the change log is marked compacted through it, so every node gets a full
/// snapshot of the restored state instead of a delta from a version of another history.
enum ConfigAdvanceSchema {
    static let statements: [String] = [
        """
        CREATE FUNCTION zaas_config_advance(p_past bigint) RETURNS bigint
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            DECLARE
                advanced bigint;
            BEGIN
                UPDATE config_version SET version = greatest(version, p_past) + 1,
                                          compacted_through = greatest(version, p_past) + 1
                RETURNING version INTO advanced;
                PERFORM pg_notify('zaas_config', advanced::text);
                RETURN advanced;
            END
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_config_advance(bigint) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_config_advance(bigint) TO {{app_role}}",
    ]
}
