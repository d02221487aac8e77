/// Migration 16: the model catalog, the backends nodes route questions to.
///
/// Operators manage it (`/admin/v1/models`, `zaasctl models`); every change appends to the
/// config change log like a tier change, and the whole catalog travels in the settings of every
/// config document. No secret is stored: `credential_name` names what a node reads from its own
/// environment or secret directory. Prices are integers of nano-dollars per 1 000 tokens, so
/// usage sums are exact.
enum ModelCatalogSchema {
    static let statements: [String] = [
        """
        CREATE TABLE model_backends (
            id uuid PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$'),
            model_class text NOT NULL CHECK (model_class IN ('local', 'cloud')),
            protocol text NOT NULL DEFAULT 'openai-chat' CHECK (protocol IN ('openai-chat')),
            base_url text NOT NULL CHECK (octet_length(base_url) <= 2048 AND base_url ~* '^https?://[^/?#@]+'),
            upstream_model text NOT NULL
                CHECK (octet_length(upstream_model) BETWEEN 1 AND 200 AND upstream_model !~ '[[:cntrl:]]'),
            credential_name text CHECK (credential_name ~ '^[A-Z][A-Z0-9_]{0,127}$'),
            timeout_ms integer NOT NULL CHECK (timeout_ms BETWEEN 100 AND 600000),
            max_concurrency integer NOT NULL CHECK (max_concurrency BETWEEN 1 AND 1024),
            context_window integer NOT NULL CHECK (context_window BETWEEN 256 AND 4194304),
            input_nano_usd_per_1k bigint NOT NULL CHECK (input_nano_usd_per_1k BETWEEN 0 AND 1000000000000),
            output_nano_usd_per_1k bigint NOT NULL CHECK (output_nano_usd_per_1k BETWEEN 0 AND 1000000000000),
            enabled boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "REVOKE TRUNCATE ON model_backends FROM {{app_role}}",
        """
        CREATE FUNCTION zaas_record_model_catalog_change() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
        DECLARE
            scopes uuid[];
            entity_keys text[];
        BEGIN
            IF TG_OP = 'DELETE' THEN
                SELECT array_agg(NULL::uuid), array_agg(o.id::text) INTO scopes, entity_keys FROM old_rows o;
            ELSE
                SELECT array_agg(NULL::uuid), array_agg(n.id::text) INTO scopes, entity_keys FROM new_rows n;
            END IF;
            PERFORM zaas_append_config_changes('model_backends', lower(TG_OP), scopes, entity_keys);
            RETURN NULL;
        END
        $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_record_model_catalog_change() FROM PUBLIC, {{app_role}}",
        """
        CREATE TRIGGER config_change_insert AFTER INSERT ON model_backends
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_model_catalog_change()
        """,
        """
        CREATE TRIGGER config_change_update AFTER UPDATE ON model_backends
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_model_catalog_change()
        """,
        """
        CREATE TRIGGER config_change_delete AFTER DELETE ON model_backends
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_model_catalog_change()
        """,
        // Operators' changes to the catalog are audited like their changes to tenants.
        """
        CREATE OR REPLACE FUNCTION zaas_audit_operator_change() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
        DECLARE
            changed record;
            operator uuid := zaas_current_operator();
            scope uuid;
            row_key text;
        BEGIN
            IF operator IS NULL THEN RETURN NULL; END IF;
            IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
            IF TG_TABLE_NAME = 'tenants' THEN
                scope := changed.id; row_key := changed.id::text;
            ELSIF TG_TABLE_NAME IN ('operators', 'model_backends') THEN
                scope := NULL; row_key := changed.id::text;
            ELSIF TG_TABLE_NAME = 'quota_policies' THEN
                scope := changed.tenant_id; row_key := changed.tenant_id::text;
            ELSE
                scope := changed.tenant_id; row_key := changed.id::text;
            END IF;
            INSERT INTO operator_audit (operator_id, tenant_id, table_name, operation, row_id)
            VALUES (operator, scope, TG_TABLE_NAME, lower(TG_OP), row_key);
            RETURN NULL;
        END
        $$
        """,
        """
        CREATE TRIGGER operator_audit AFTER INSERT OR UPDATE OR DELETE ON model_backends
            FOR EACH ROW EXECUTE FUNCTION zaas_audit_operator_change()
        """,
    ]
}
