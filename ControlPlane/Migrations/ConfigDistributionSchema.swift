/// Migration 4: what config distribution needs from the database.
///
/// - the change log wakes listeners (`NOTIFY zaas_config`) and records compaction;
/// - last-used times are not configuration: writing them appends nothing to the change log;
/// - the node registry;
/// - SECURITY DEFINER readers that build snapshots and deltas across tenants — like the login
///   gates, the only cross-tenant paths, each returning exactly what a node enforces.
enum ConfigDistributionSchema {
    static let statements: [String] =
        [
            "ALTER TABLE config_version ADD COLUMN compacted_through bigint NOT NULL DEFAULT 0",
            """
            CREATE OR REPLACE FUNCTION zaas_record_config_change() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
            DECLARE
                changed record;
                next_version bigint;
                scope uuid;
                entity_key text;
            BEGIN
                IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'api_keys'
                    AND (to_jsonb(OLD) - 'last_used_at') = (to_jsonb(NEW) - 'last_used_at') THEN
                    RETURN NULL;
                END IF;
                IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
                UPDATE config_version SET version = version + 1 RETURNING version INTO next_version;
                IF TG_TABLE_NAME = 'tenants' THEN
                    scope := changed.id; entity_key := changed.id::text;
                ELSIF TG_TABLE_NAME = 'tiers' THEN
                    scope := NULL; entity_key := changed.id;
                ELSIF TG_TABLE_NAME = 'quota_policies' THEN
                    scope := changed.tenant_id; entity_key := changed.tenant_id::text;
                ELSE
                    scope := changed.tenant_id; entity_key := changed.id::text;
                END IF;
                INSERT INTO config_changes (version, tenant_id, entity, entity_id, operation)
                VALUES (next_version, scope, TG_TABLE_NAME, entity_key, lower(TG_OP));
                -- Delivered at commit, so a woken listener always finds the change committed.
                PERFORM pg_notify('zaas_config', next_version::text);
                RETURN NULL;
            END
            $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_record_config_change() FROM PUBLIC, {{app_role}}",

            // Last-used writes come from the batched reports of data-plane nodes.
            "CREATE POLICY definer_functions ON api_keys TO CURRENT_USER USING (true) WITH CHECK (true)",
            "CREATE POLICY definer_functions ON quota_policies TO CURRENT_USER USING (true) WITH CHECK (true)",
            "CREATE POLICY definer_reads ON config_changes FOR SELECT TO CURRENT_USER USING (true)",
            "CREATE POLICY definer_deletes ON config_changes FOR DELETE TO CURRENT_USER USING (true)",

            // Data-plane nodes, as they last reported themselves. Platform data, not a tenant's.
            """
            CREATE TABLE data_plane_nodes (
                id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
                address text NOT NULL CHECK (length(address) <= 500),
                software_version text NOT NULL CHECK (length(software_version) <= 100),
                config_version bigint NOT NULL,
                first_seen_at timestamptz NOT NULL DEFAULT now(),
                last_seen_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "REVOKE TRUNCATE ON data_plane_nodes FROM {{app_role}}",

            """
            CREATE FUNCTION zaas_config_head() RETURNS TABLE (version bigint, compacted_through bigint)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$ SELECT version, compacted_through FROM config_version $$
            """,
            """
            CREATE FUNCTION zaas_config_changes(p_since bigint, p_until bigint)
            RETURNS TABLE (version bigint, tenant_id uuid, entity text, entity_id text, operation text)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT c.version, c.tenant_id, c.entity, c.entity_id, c.operation FROM config_changes c
                    WHERE c.version > p_since AND c.version <= p_until ORDER BY c.version
                $$
            """,
            // Tenants with their policy resolved: the quota policy's value where set, else the tier's.
            // NULL filters mean "all"; otherwise a tenant matches by id or by tier.
            """
            CREATE FUNCTION zaas_config_tenants(p_ids uuid[], p_tiers text[])
            RETURNS TABLE (id uuid, slug text, status text, tier_id text, queries_per_hour integer,
                           tenant_queries_per_hour integer, model_classes text[], max_citations integer,
                           cache_ttl_seconds integer, audit_retention_days integer, canon_updates_allowed boolean)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT t.id, t.slug, t.status, t.tier_id,
                           coalesce(q.queries_per_hour, r.queries_per_hour),
                           q.tenant_queries_per_hour,
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
            // Keys a node should know: not revoked, not expired, of a tenant that is not deleted.
            """
            CREATE FUNCTION zaas_config_keys(p_ids uuid[])
            RETURNS TABLE (id uuid, tenant_id uuid, key_id text, environment text, secret_digest bytea,
                           scopes text[], expires_at timestamptz, revoked_at timestamptz)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT k.id, k.tenant_id, k.key_id, k.environment, k.secret_digest, k.scopes,
                           k.expires_at, k.revoked_at
                    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                    WHERE t.status <> 'deleted'
                      AND (k.revoked_at IS NULL OR k.revoked_at > now())
                      AND (k.expires_at IS NULL OR k.expires_at > now())
                      AND (p_ids IS NULL OR k.id = ANY (p_ids))
                    ORDER BY k.id
                $$
            """,
            // Batched last-used reports: only ever moves a time forward.
            """
            CREATE FUNCTION zaas_record_key_usage(p_ids uuid[], p_used_at timestamptz[]) RETURNS integer
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    updated integer;
                BEGIN
                    UPDATE api_keys k SET last_used_at = u.used_at
                    FROM unnest(p_ids, p_used_at) AS u(id, used_at)
                    WHERE k.id = u.id AND u.used_at <= now() + interval '5 minutes'
                      AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at);
                    GET DIAGNOSTICS updated = ROW_COUNT;
                    RETURN updated;
                END
                $$
            """,
            // Drops change-log entries older than the cutoff; nodes behind that get a full snapshot.
            """
            CREATE FUNCTION zaas_compact_config_changes(p_before timestamptz) RETURNS bigint
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    through bigint;
                BEGIN
                    SELECT max(version) INTO through FROM config_changes WHERE changed_at < p_before;
                    IF through IS NULL THEN RETURN 0; END IF;
                    DELETE FROM config_changes WHERE version <= through;
                    UPDATE config_version SET compacted_through = greatest(compacted_through, through);
                    RETURN through;
                END
                $$
            """,
        ]
        + [
            "zaas_config_head()", "zaas_config_changes(bigint, bigint)", "zaas_config_tenants(uuid[], text[])",
            "zaas_config_keys(uuid[])", "zaas_record_key_usage(uuid[], timestamptz[])",
            "zaas_compact_config_changes(timestamptz)",
        ].flatMap { function in
            [
                "REVOKE EXECUTE ON FUNCTION \(function) FROM PUBLIC",
                "GRANT EXECUTE ON FUNCTION \(function) TO {{app_role}}",
            ]
        }
}
