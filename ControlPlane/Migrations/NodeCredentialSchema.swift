/// Migration 14: every node has a credential of its own, and internal writes are re-checked.
///
/// Before this, one shared `nodes.token` let any holder act as every node: register any number
/// of node ids (inflating the live-node count nodes divide limits by while Redis is down), and
/// write canon updates and cached answers for any tenant. Now:
///
/// - `node_credentials` holds the SHA-256 of each issued token and the node id it is bound to;
///   operators issue, list and revoke them. Only the digest is stored: tokens are 256 random
///   bits, so a digest lookup is safe, and a copy of the table authenticates nobody.
/// - A node registers only under its credential's node id, and only nodes with an active
///   credential count as live.
/// - `zaas_key_may_act` re-checks, for a write a node makes on a key's behalf, that the key
///   belongs to the tenant, is active and holds the scope, and that the tenant is active.
/// - `zaas_answer_cache_put` stores answers only for active tenants, and for no longer than the
///   tenant's own cache TTL.
enum NodeCredentialSchema {
    static let statements: [String] = [
        """
        CREATE TABLE node_credentials (
            id uuid PRIMARY KEY,
            node_id text NOT NULL CHECK (node_id ~ '^[A-Za-z0-9._:-]{1,200}$'),
            token_digest bytea NOT NULL UNIQUE CHECK (octet_length(token_digest) = 32),
            created_by uuid,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz
        )
        """,
        "CREATE INDEX node_credentials_active ON node_credentials (node_id) WHERE revoked_at IS NULL",
        "REVOKE DELETE, TRUNCATE ON node_credentials FROM {{app_role}}",
        """
        CREATE FUNCTION zaas_key_may_act(p_tenant uuid, p_key uuid, p_scope text) RETURNS text
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT CASE
                    WHEN t.id IS NULL OR t.status = 'deleted' OR k.id IS NULL THEN 'unknown'
                    WHEN k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= now())
                        THEN 'inactive-key'
                    WHEN NOT (p_scope = ANY (k.scopes)) THEN 'missing-scope'
                    WHEN t.status <> 'active' THEN 'inactive-tenant'
                    ELSE 'ok'
                END
                FROM (SELECT 1) AS one
                LEFT JOIN tenants t ON t.id = p_tenant
                LEFT JOIN api_keys k ON k.id = p_key AND k.tenant_id = p_tenant
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_key_may_act(uuid, uuid, text) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_key_may_act(uuid, uuid, text) TO {{app_role}}",
        """
        CREATE OR REPLACE FUNCTION zaas_answer_cache_put(
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
                           u.answer::jsonb,
                           now() + make_interval(secs => least(u.ttl, coalesce(q.cache_ttl_seconds, r.cache_ttl_seconds)))
                    FROM unnest(p_tenants, p_digests, p_scopes, p_questions, p_embeddings, p_answers, p_ttl_seconds)
                         AS u(tenant_id, digest, scope, question, embedding, answer, ttl)
                    JOIN tenants t ON t.id = u.tenant_id AND t.status = 'active'
                    JOIN tiers r ON r.id = t.tier_id
                    LEFT JOIN quota_policies q ON q.tenant_id = t.id
                    WHERE least(u.ttl, coalesce(q.cache_ttl_seconds, r.cache_ttl_seconds)) > 0
                    ON CONFLICT (tenant_id, digest) DO UPDATE
                        SET scope = EXCLUDED.scope, question = EXCLUDED.question, embedding = EXCLUDED.embedding,
                            answer = EXCLUDED.answer, created_at = now(), expires_at = EXCLUDED.expires_at;
                    GET DIAGNOSTICS stored = ROW_COUNT;
                    RETURN stored;
                END
            $$
        """,
    ]
}
