/// Migration 2: tenants, admins, sessions, API keys, tiers, quota policies, the config change log
/// and the operator audit trail, with row-level security as the wall between tenants.
///
/// Scope comes only from transaction-local settings (`set_config(…, true)`):
/// `app.tenant_id` for a tenant's request, `app.operator_id` for the explicit operator path.
/// With neither set, every tenant table reads empty.
enum TenancySchema {
    /// The predicate every tenant-owned table's policy uses.
    static let tenantMatches = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"

    /// Tables a tenant owns rows of. Each gets ENABLE + FORCE RLS and one policy with USING and
    /// WITH CHECK: the row's tenant is the scope's, or the operator path is active.
    static let tenantTables = ["admin_users", "admin_sessions", "api_keys", "quota_policies"]

    static var statements: [String] {
        var statements = [
            // Scope helpers. STABLE: read once per statement.
            """
            CREATE FUNCTION zaas_current_operator() RETURNS uuid
                LANGUAGE sql STABLE
                AS $$ SELECT nullif(current_setting('app.operator_id', true), '')::uuid $$
            """,

            // Tiers: platform-wide, seeded here, readable by everyone, changed only by migrations.
            """
            CREATE TABLE tiers (
                id text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_-]{0,31}$'),
                name text NOT NULL,
                queries_per_hour integer NOT NULL CHECK (queries_per_hour BETWEEN 1 AND 10000000),
                model_classes text[] NOT NULL
                    CHECK (cardinality(model_classes) > 0 AND model_classes <@ ARRAY['local', 'cloud']),
                max_citations integer NOT NULL CHECK (max_citations BETWEEN 1 AND 50),
                cache_ttl_seconds integer NOT NULL CHECK (cache_ttl_seconds BETWEEN 0 AND 2592000),
                audit_retention_days integer NOT NULL CHECK (audit_retention_days BETWEEN 1 AND 3650),
                canon_updates_allowed boolean NOT NULL,
                sort_order integer NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            INSERT INTO tiers (id, name, queries_per_hour, model_classes, max_citations, cache_ttl_seconds,
                               audit_retention_days, canon_updates_allowed, sort_order) VALUES
                ('free', 'Free', 10, ARRAY['local'], 3, 300, 7, false, 1),
                ('pro', 'Pro', 100, ARRAY['local', 'cloud'], 5, 900, 30, false, 2),
                ('team', 'Team', 1000, ARRAY['local', 'cloud'], 8, 1800, 90, false, 3),
                ('enterprise', 'Enterprise', 10000, ARRAY['local', 'cloud'], 10, 3600, 365, true, 4)
            """,
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tiers FROM {{app_role}}",

            // Tenants: a tenant sees its own row; only the operator path writes.
            """
            CREATE TABLE tenants (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
                slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
                status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
                tier_id text NOT NULL REFERENCES tiers (id),
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                revision integer NOT NULL DEFAULT 1
            )
            """,
            "CREATE INDEX tenants_status ON tenants (status, id)",
            "ALTER TABLE tenants ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE tenants FORCE ROW LEVEL SECURITY",
            """
            CREATE POLICY tenant_isolation ON tenants
                USING (id = nullif(current_setting('app.tenant_id', true), '')::uuid
                       OR zaas_current_operator() IS NOT NULL)
                WITH CHECK (id = nullif(current_setting('app.tenant_id', true), '')::uuid
                            OR zaas_current_operator() IS NOT NULL)
            """,

            // Tenant admins. Emails are unique platform-wide: login finds the account by email alone.
            """
            CREATE TABLE admin_users (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id uuid NOT NULL REFERENCES tenants (id),
                email text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
                password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
                role text NOT NULL CHECK (role IN ('admin', 'viewer')),
                status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
                failed_logins integer NOT NULL DEFAULT 0,
                locked_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                revision integer NOT NULL DEFAULT 1
            )
            """,
            "CREATE UNIQUE INDEX admin_users_email ON admin_users (email)",
            "CREATE INDEX admin_users_tenant ON admin_users (tenant_id, id)",

            // Admin sessions: only a digest of the opaque token is stored.
            """
            CREATE TABLE admin_sessions (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id uuid NOT NULL REFERENCES tenants (id),
                admin_user_id uuid NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
                token_digest bytea NOT NULL UNIQUE CHECK (octet_length(token_digest) = 32),
                created_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL,
                revoked_at timestamptz
            )
            """,
            "CREATE INDEX admin_sessions_user ON admin_sessions (tenant_id, admin_user_id)",

            // API keys: `zaas_<environment>_<key_id>_<secret>`; the secret is stored as an HMAC digest.
            """
            CREATE TABLE api_keys (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id uuid NOT NULL REFERENCES tenants (id),
                key_id text NOT NULL UNIQUE CHECK (key_id ~ '^[a-z0-9]{16,32}$'),
                environment text NOT NULL CHECK (environment IN ('live', 'test')),
                secret_digest bytea NOT NULL CHECK (octet_length(secret_digest) = 32),
                name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
                scopes text[] NOT NULL
                    CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['query', 'canon:write', 'stats:read']),
                created_at timestamptz NOT NULL DEFAULT now(),
                created_by uuid,
                last_used_at timestamptz,
                expires_at timestamptz,
                revoked_at timestamptz,
                replaced_by uuid REFERENCES api_keys (id),
                revision integer NOT NULL DEFAULT 1
            )
            """,
            "CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id)",

            // Per-tenant overrides of the tier; NULL means "as the tier says".
            """
            CREATE TABLE quota_policies (
                tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
                queries_per_hour integer CHECK (queries_per_hour BETWEEN 1 AND 10000000),
                tenant_queries_per_hour integer CHECK (tenant_queries_per_hour BETWEEN 1 AND 100000000),
                model_classes text[]
                    CHECK (cardinality(model_classes) > 0 AND model_classes <@ ARRAY['local', 'cloud']),
                max_citations integer CHECK (max_citations BETWEEN 1 AND 50),
                cache_ttl_seconds integer CHECK (cache_ttl_seconds BETWEEN 0 AND 2592000),
                audit_retention_days integer CHECK (audit_retention_days BETWEEN 1 AND 3650),
                canon_updates_allowed boolean,
                updated_at timestamptz NOT NULL DEFAULT now(),
                revision integer NOT NULL DEFAULT 1
            )
            """,

            // Operators: platform staff, visible only on the operator path.
            """
            CREATE TABLE operators (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                email text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
                password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
                status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
                failed_logins integer NOT NULL DEFAULT 0,
                locked_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE operator_sessions (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                operator_id uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
                token_digest bytea NOT NULL UNIQUE CHECK (octet_length(token_digest) = 32),
                created_at timestamptz NOT NULL DEFAULT now(),
                expires_at timestamptz NOT NULL,
                revoked_at timestamptz
            )
            """,

            // The config change log. One counter row, bumped under its row lock, so versions are
            // handed out in commit order: a reader of "changes since N" never misses a late commit.
            """
            CREATE TABLE config_version (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                version bigint NOT NULL
            )
            """,
            "INSERT INTO config_version (singleton, version) VALUES (true, 0)",
            """
            CREATE TABLE config_changes (
                version bigint PRIMARY KEY,
                tenant_id uuid,
                entity text NOT NULL,
                entity_id text NOT NULL,
                operation text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
                changed_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "CREATE INDEX config_changes_tenant ON config_changes (tenant_id, version)",

            // What operators did, written by trigger whenever the operator path changes a row.
            """
            CREATE TABLE operator_audit (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                operator_id uuid NOT NULL,
                tenant_id uuid,
                table_name text NOT NULL,
                operation text NOT NULL,
                row_id text NOT NULL,
                at timestamptz NOT NULL DEFAULT now()
            )
            """,
        ]

        // Row-level security on every tenant-owned table: both USING and WITH CHECK.
        for table in tenantTables {
            statements += [
                "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE \(table) FORCE ROW LEVEL SECURITY",
                """
                CREATE POLICY tenant_isolation ON \(table)
                    USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                    WITH CHECK (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
            ]
        }

        // Writes that only the operator path may make, layered on as RESTRICTIVE policies:
        // a tenant reads its own tenant row and quota policy but cannot change them.
        for table in ["tenants", "quota_policies"] {
            statements += [
                """
                CREATE POLICY operator_inserts ON \(table) AS RESTRICTIVE FOR INSERT
                    WITH CHECK (zaas_current_operator() IS NOT NULL)
                """,
                """
                CREATE POLICY operator_updates ON \(table) AS RESTRICTIVE FOR UPDATE
                    USING (zaas_current_operator() IS NOT NULL) WITH CHECK (zaas_current_operator() IS NOT NULL)
                """,
                """
                CREATE POLICY operator_deletes ON \(table) AS RESTRICTIVE FOR DELETE
                    USING (zaas_current_operator() IS NOT NULL)
                """,
            ]
        }

        // System tables: RLS on and forced; the operator path reads them; only the triggers below
        // (running as the owner) write them, since the application role has no INSERT grant.
        for table in ["operators", "operator_sessions", "config_changes", "operator_audit"] {
            statements += [
                "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE \(table) FORCE ROW LEVEL SECURITY",
                """
                CREATE POLICY operator_only ON \(table)
                    USING (zaas_current_operator() IS NOT NULL) WITH CHECK (zaas_current_operator() IS NOT NULL)
                """,
            ]
        }
        statements += [
            "CREATE POLICY trigger_appends ON config_changes FOR INSERT TO CURRENT_USER WITH CHECK (true)",
            "CREATE POLICY trigger_appends ON operator_audit FOR INSERT TO CURRENT_USER WITH CHECK (true)",
            "REVOKE ALL ON config_version FROM {{app_role}}",
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON config_changes FROM {{app_role}}",
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON operator_audit FROM {{app_role}}",
            "REVOKE TRUNCATE ON tenants, admin_users, admin_sessions, api_keys, quota_policies FROM {{app_role}}",
        ]

        // Every change a data-plane node enforces appends to the change log in its own transaction.
        statements += [
            """
            CREATE FUNCTION zaas_record_config_change() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
            DECLARE
                changed record;
                next_version bigint;
                scope uuid;
                entity_key text;
            BEGIN
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
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE FUNCTION zaas_audit_operator_change() RETURNS trigger
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
                ELSIF TG_TABLE_NAME = 'operators' THEN
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
            "REVOKE EXECUTE ON FUNCTION zaas_record_config_change() FROM PUBLIC, {{app_role}}",
            "REVOKE EXECUTE ON FUNCTION zaas_audit_operator_change() FROM PUBLIC, {{app_role}}",
        ]
        for table in ["tiers", "tenants", "api_keys", "quota_policies"] {
            statements.append(
                """
                CREATE TRIGGER config_change AFTER INSERT OR UPDATE OR DELETE ON \(table)
                    FOR EACH ROW EXECUTE FUNCTION zaas_record_config_change()
                """
            )
        }
        for table in ["tenants", "admin_users", "api_keys", "quota_policies", "operators"] {
            statements.append(
                """
                CREATE TRIGGER operator_audit AFTER INSERT OR UPDATE OR DELETE ON \(table)
                    FOR EACH ROW EXECUTE FUNCTION zaas_audit_operator_change()
                """
            )
        }
        return statements
    }
}
