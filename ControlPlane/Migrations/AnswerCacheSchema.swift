/// Migration 8: the persistent answer cache.
///
/// Nodes write answers through the control plane's internal API in batches, off the request
/// path, and read them back when Redis misses (after a Redis restart or eviction). The table is
/// tenant-owned under the usual row-level security; nodes reach it only through the SECURITY
/// DEFINER functions below, which the internal API (node credential) calls.
enum AnswerCacheSchema {
    static let statements: [String] =
        [
            """
            CREATE TABLE answer_cache (
                tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                digest text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
                scope text NOT NULL CHECK (scope ~ '^[0-9a-f]{32}$'),
                question text NOT NULL CHECK (length(question) <= 20000),
                -- The question's embedding (little-endian float32), for the semantic cache; NULL when
                -- the query had context (never served semantically).
                embedding bytea CHECK (embedding IS NULL OR length(embedding) <= 16384),
                answer jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, digest)
            )
            """,
            "CREATE INDEX answer_cache_expiry ON answer_cache (expires_at)",
            "CREATE INDEX answer_cache_scope ON answer_cache (tenant_id, scope, created_at)",
            "ALTER TABLE answer_cache ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE answer_cache FORCE ROW LEVEL SECURITY",
            """
            CREATE POLICY tenant_isolation ON answer_cache
                USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
                       OR zaas_current_operator() IS NOT NULL)
                WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid
                            OR zaas_current_operator() IS NOT NULL)
            """,
            // The SECURITY DEFINER functions below run as the owner.
            "CREATE POLICY definer_functions ON answer_cache TO CURRENT_USER USING (true) WITH CHECK (true)",
            // Stores a batch (a later answer for the same key replaces the earlier one); rows of
            // tenants that no longer exist are skipped. Embeddings arrive as base64 ('' for none),
            // answers as JSON text.
            """
            CREATE FUNCTION zaas_answer_cache_put(
                p_tenants uuid[], p_digests text[], p_scopes text[], p_questions text[], p_embeddings text[],
                p_answers text[], p_ttl_seconds integer[])
            RETURNS integer
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    stored integer;
                BEGIN
                    INSERT INTO answer_cache (tenant_id, digest, scope, question, embedding, answer, expires_at)
                    SELECT DISTINCT ON (u.tenant_id, u.digest)
                           u.tenant_id, u.digest, u.scope, u.question,
                           CASE WHEN u.embedding = '' THEN NULL ELSE decode(u.embedding, 'base64') END,
                           u.answer::jsonb, now() + make_interval(secs => u.ttl)
                    FROM unnest(p_tenants, p_digests, p_scopes, p_questions, p_embeddings, p_answers, p_ttl_seconds)
                         AS u(tenant_id, digest, scope, question, embedding, answer, ttl)
                    JOIN tenants t ON t.id = u.tenant_id AND t.status <> 'deleted'
                    WHERE u.ttl > 0
                    ON CONFLICT (tenant_id, digest) DO UPDATE
                        SET scope = EXCLUDED.scope, question = EXCLUDED.question, embedding = EXCLUDED.embedding,
                            answer = EXCLUDED.answer, created_at = now(), expires_at = EXCLUDED.expires_at;
                    GET DIAGNOSTICS stored = ROW_COUNT;
                    RETURN stored;
                END
                $$
            """,
            // An unexpired answer and the seconds it has left.
            """
            CREATE FUNCTION zaas_answer_cache_get(p_tenant uuid, p_digest text)
            RETURNS TABLE (answer jsonb, ttl_seconds integer)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT answer, greatest(1, ceil(extract(epoch FROM expires_at - now())))::integer
                    FROM answer_cache
                    WHERE tenant_id = p_tenant AND digest = p_digest AND expires_at > now()
                $$
            """,
            // Removes, at most p_limit rows at a time: expired answers, and answers written before the
            // latest publication of the tenant's overlay or of the base canon (unreachable: the canon
            // versions are part of every key).
            """
            CREATE FUNCTION zaas_answer_cache_sweep(p_limit integer) RETURNS integer
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    removed integer;
                BEGIN
                    DELETE FROM answer_cache c
                    WHERE c.ctid IN (
                        SELECT a.ctid FROM answer_cache a
                        WHERE a.expires_at <= now()
                           OR a.created_at < (SELECT max(p.published_at) FROM canon_publications p
                                              WHERE p.tenant_id = a.tenant_id OR p.tenant_id IS NULL)
                        LIMIT p_limit
                    );
                    GET DIAGNOSTICS removed = ROW_COUNT;
                    RETURN removed;
                END
                $$
            """,
        ]
        + [
            "zaas_answer_cache_put(uuid[], text[], text[], text[], text[], text[], integer[])",
            "zaas_answer_cache_get(uuid, text)", "zaas_answer_cache_sweep(integer)",
        ].flatMap { function in
            [
                "REVOKE EXECUTE ON FUNCTION \(function) FROM PUBLIC",
                "GRANT EXECUTE ON FUNCTION \(function) TO {{app_role}}",
            ]
        }
}

/// Migration 9: a tenant's own semantic-cache threshold, in its quota policy.
enum SemanticThresholdSchema {
    static let statements: [String] = [
        """
        ALTER TABLE quota_policies ADD COLUMN semantic_cache_threshold real
            CHECK (semantic_cache_threshold BETWEEN 0.8 AND 1)
        """,
        // The thresholds of the given tenants (all when NULL) that their quota policies set.
        """
        CREATE FUNCTION zaas_config_cache_thresholds(p_ids uuid[])
        RETURNS TABLE (tenant_id uuid, semantic_cache_threshold real)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT q.tenant_id, q.semantic_cache_threshold FROM quota_policies q
                WHERE q.semantic_cache_threshold IS NOT NULL AND (p_ids IS NULL OR q.tenant_id = ANY (p_ids))
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_config_cache_thresholds(uuid[]) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_config_cache_thresholds(uuid[]) TO {{app_role}}",
    ]
}
