/// Migration 20: a tenant may opt in to keeping raw questions (`store_raw_questions` in its quota
/// policy; unset means no): otherwise audit events and the answer cache keep questions redacted
/// (docs/audit.md). The quota policy's settings that only nodes read travel through one function
/// now, which replaces migration 9's and migration 18's.
enum RawQuestionsSchema {
    static let statements: [String] = [
        "ALTER TABLE quota_policies ADD COLUMN store_raw_questions boolean",
        "DROP FUNCTION zaas_config_cache_thresholds(uuid[])",
        "DROP FUNCTION zaas_config_routing_thresholds(uuid[])",
        // The node-only settings of the given tenants' quota policies (all tenants when NULL), for
        // the policies that set any.
        """
        CREATE FUNCTION zaas_config_policy_settings(p_ids uuid[])
        RETURNS TABLE (tenant_id uuid, semantic_cache_threshold real, routing_threshold real,
                       store_raw_questions boolean)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT q.tenant_id, q.semantic_cache_threshold, q.routing_threshold, q.store_raw_questions
                FROM quota_policies q
                WHERE (q.semantic_cache_threshold IS NOT NULL OR q.routing_threshold IS NOT NULL
                       OR q.store_raw_questions IS NOT NULL)
                  AND (p_ids IS NULL OR q.tenant_id = ANY (p_ids))
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_config_policy_settings(uuid[]) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_config_policy_settings(uuid[]) TO {{app_role}}",
    ]
}
