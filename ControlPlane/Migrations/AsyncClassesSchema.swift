/// Migration 26: a tenant's quota policy may name model classes whose answers are given
/// asynchronously (`async_model_classes`; docs/airllm.md): a query routed to one of them, when its
/// request does not say `async`, is answered 202 and run by a job worker. Unset means none. The
/// node-only settings function gains the column (it replaces migration 20's).
enum AsyncClassesSchema {
    static let statements: [String] = [
        """
        ALTER TABLE quota_policies ADD COLUMN async_model_classes text[]
            CONSTRAINT quota_policies_async_model_classes_check
            CHECK (async_model_classes <@ ARRAY['local', 'cloud', 'large-local'])
        """,
        "DROP FUNCTION zaas_config_policy_settings(uuid[])",
        """
        CREATE FUNCTION zaas_config_policy_settings(p_ids uuid[])
        RETURNS TABLE (tenant_id uuid, semantic_cache_threshold real, routing_threshold real,
                       store_raw_questions boolean, async_model_classes text[])
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT q.tenant_id, q.semantic_cache_threshold, q.routing_threshold, q.store_raw_questions,
                       q.async_model_classes
                FROM quota_policies q
                WHERE (q.semantic_cache_threshold IS NOT NULL OR q.routing_threshold IS NOT NULL
                       OR q.store_raw_questions IS NOT NULL OR q.async_model_classes IS NOT NULL)
                  AND (p_ids IS NULL OR q.tenant_id = ANY (p_ids))
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_config_policy_settings(uuid[]) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_config_policy_settings(uuid[]) TO {{app_role}}",
    ]
}
