/// Migration 5: the change log is written once per statement instead of once per row.
///
/// A row-level trigger bumped the single `config_version` row for every row, so a statement that
/// touches many rows (a bulk key import) updated that row thousands of times in one transaction,
/// each update slower than the last. Statement-level triggers with transition tables take a block
/// of versions with one update and append every changed row with one insert. Versions stay
/// gap-free and in commit order (the counter row stays locked until commit), and an update that
/// changes nothing a node enforces (`last_used_at` only, or no column at all) appends nothing.
enum StatementChangeLog {
    static let tables = ["tiers", "tenants", "api_keys", "quota_policies"]

    static var statements: [String] {
        var statements = [
            """
            CREATE FUNCTION zaas_append_config_changes(p_entity text, p_operation text, p_scopes uuid[], p_keys text[])
            RETURNS void
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
            DECLARE
                changed integer := coalesce(cardinality(p_keys), 0);
                last_version bigint;
            BEGIN
                IF changed = 0 THEN RETURN; END IF;
                UPDATE config_version SET version = version + changed RETURNING version INTO last_version;
                INSERT INTO config_changes (version, tenant_id, entity, entity_id, operation)
                SELECT last_version - changed + u.ordinal, u.scope, p_entity, u.entity_key, p_operation
                FROM unnest(p_scopes, p_keys) WITH ORDINALITY AS u(scope, entity_key, ordinal);
                -- Delivered at commit, so a woken listener always finds the changes committed.
                PERFORM pg_notify('zaas_config', last_version::text);
            END
            $$
            """,
            """
            CREATE FUNCTION zaas_record_config_statement() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
            DECLARE
                key_column text := CASE TG_TABLE_NAME WHEN 'quota_policies' THEN 'tenant_id' ELSE 'id' END;
                scope_column text := CASE TG_TABLE_NAME WHEN 'tiers' THEN NULL WHEN 'tenants' THEN 'id'
                                     ELSE 'tenant_id' END;
                scopes uuid[];
                entity_keys text[];
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    SELECT array_agg((r.j ->> scope_column)::uuid ORDER BY r.j ->> key_column),
                           array_agg(r.j ->> key_column ORDER BY r.j ->> key_column)
                    INTO scopes, entity_keys
                    FROM (SELECT to_jsonb(n) AS j FROM new_rows n) r;
                ELSIF TG_OP = 'DELETE' THEN
                    SELECT array_agg((r.j ->> scope_column)::uuid ORDER BY r.j ->> key_column),
                           array_agg(r.j ->> key_column ORDER BY r.j ->> key_column)
                    INTO scopes, entity_keys
                    FROM (SELECT to_jsonb(o) AS j FROM old_rows o) r;
                ELSE
                    SELECT array_agg((n.j ->> scope_column)::uuid ORDER BY n.j ->> key_column),
                           array_agg(n.j ->> key_column ORDER BY n.j ->> key_column)
                    INTO scopes, entity_keys
                    FROM (SELECT to_jsonb(x) AS j FROM new_rows x) n
                    JOIN (SELECT to_jsonb(x) AS j FROM old_rows x) o ON o.j ->> key_column = n.j ->> key_column
                    WHERE (o.j - 'last_used_at') IS DISTINCT FROM (n.j - 'last_used_at');
                END IF;
                PERFORM zaas_append_config_changes(TG_TABLE_NAME, lower(TG_OP), scopes, entity_keys);
                RETURN NULL;
            END
            $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_append_config_changes(text, text, uuid[], text[]) FROM PUBLIC, {{app_role}}",
            "REVOKE EXECUTE ON FUNCTION zaas_record_config_statement() FROM PUBLIC, {{app_role}}",
        ]
        for table in tables {
            statements += [
                "DROP TRIGGER config_change ON \(table)",
                """
                CREATE TRIGGER config_change_insert AFTER INSERT ON \(table)
                    REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_config_statement()
                """,
                """
                CREATE TRIGGER config_change_update AFTER UPDATE ON \(table)
                    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_config_statement()
                """,
                """
                CREATE TRIGGER config_change_delete AFTER DELETE ON \(table)
                    REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_config_statement()
                """,
            ]
        }
        statements.append("DROP FUNCTION zaas_record_config_change()")
        return statements
    }
}
