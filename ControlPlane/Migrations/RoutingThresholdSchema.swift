/// Migration 18: a tenant's own routing threshold, in its quota policy: `auto` sends a question
/// whose complexity estimate reaches it to the cloud class (`ComplexityRouter`; nodes default to
/// 0.5 when the policy leaves it unset).
enum RoutingThresholdSchema {
    static let statements: [String] = [
        "ALTER TABLE quota_policies ADD COLUMN routing_threshold real CHECK (routing_threshold BETWEEN 0 AND 1)",
        // The thresholds of the given tenants (all when NULL) that their quota policies set.
        """
        CREATE FUNCTION zaas_config_routing_thresholds(p_ids uuid[])
        RETURNS TABLE (tenant_id uuid, routing_threshold real)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT q.tenant_id, q.routing_threshold FROM quota_policies q
                WHERE q.routing_threshold IS NOT NULL AND (p_ids IS NULL OR q.tenant_id = ANY (p_ids))
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_config_routing_thresholds(uuid[]) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_config_routing_thresholds(uuid[]) TO {{app_role}}",
    ]
}
