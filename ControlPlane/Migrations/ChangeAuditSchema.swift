/// Migration 22: every change to what tenants are served is an audit event too (docs/audit.md).
/// `config_changes` already gets one row per changed entity that nodes enforce (tenants,
/// policies, keys, canon publications, the model catalog), in the same transaction as the change
/// and never for `last_used_at` alone; a statement trigger on it writes the matching events:
/// `kind` `canon_update` for canon publications and `admin` for the rest, `outcome`
/// `<entity>_<operation>`, the actor (`operator:<id>` on the operator path, `tenant-admin` in a
/// tenant's scope, else `system`) and `change: {entity, entity_id, config_version}`. Operator
/// audit keeps its own rows as before; these events put the same changes in the tenant's trail,
/// in the event shape, where its admins, exports and retention see them.
enum ChangeAuditSchema {
    static let statements: [String] = [
        """
        CREATE FUNCTION zaas_audit_config_changes() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            DECLARE
                operator uuid := zaas_current_operator();
                who text := CASE
                    WHEN operator IS NOT NULL THEN 'operator:' || operator
                    WHEN nullif(current_setting('app.tenant_id', true), '') IS NOT NULL THEN 'tenant-admin'
                    ELSE 'system' END;
            BEGIN
                INSERT INTO audit_events (time, id, tenant_id, kind, node, outcome, status, event)
                SELECT c.changed_at, c.event_id, c.tenant_id, c.kind, 'control-plane', c.outcome, 200,
                       jsonb_strip_nulls(jsonb_build_object(
                           'schema', 1, 'id', c.event_id,
                           'time', to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                           'kind', c.kind, 'tenant_id', c.tenant_id, 'actor', who, 'node', 'control-plane',
                           'outcome', c.outcome, 'status', 200, 'timings_ms', '{}'::jsonb,
                           'change', jsonb_build_object(
                               'entity', c.entity, 'entity_id', c.entity_id, 'config_version', c.version)))
                FROM (SELECT n.version, n.tenant_id, n.entity, n.entity_id, n.changed_at,
                             gen_random_uuid() AS event_id,
                             CASE WHEN n.entity LIKE 'canon%' THEN 'canon_update' ELSE 'admin' END AS kind,
                             left(n.entity || '_' || n.operation, 64) AS outcome
                      FROM new_changes n) c;
                RETURN NULL;
            END
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_audit_config_changes() FROM PUBLIC, {{app_role}}",
        """
        CREATE TRIGGER audit_events AFTER INSERT ON config_changes
            REFERENCING NEW TABLE AS new_changes
            FOR EACH STATEMENT EXECUTE FUNCTION zaas_audit_config_changes()
        """,
    ]
}
