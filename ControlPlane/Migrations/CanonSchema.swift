/// Migration 6: canon versions, their entries and built artifacts, and which version each owner
/// (the platform's base canon, or one tenant's overlay) answers from.
///
/// `tenant_id` NULL marks the platform base canon: every tenant reads it, only the operator path
/// writes it. Tenant rows follow the usual isolation policy. Publishing appends to the config
/// change log like any other change a node enforces. The builder, which works for every tenant,
/// reaches versions only through the SECURITY DEFINER functions at the end.
enum CanonSchema {
    static let tenantMatches = TenancySchema.tenantMatches
    static let tables = ["canon_versions", "canon_entries", "canon_publications", "canon_publication_log"]

    static var statements: [String] {
        var statements = [
            """
            CREATE TABLE canon_artifacts (
                sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
                bytes bytea NOT NULL,
                byte_count bigint NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE canon_versions (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
                number integer NOT NULL CHECK (number > 0),
                label text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
                parent_id uuid REFERENCES canon_versions (id) ON DELETE SET NULL,
                state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'building', 'ready', 'failed')),
                entry_count integer NOT NULL,
                chunk_count integer,
                progress_done integer NOT NULL DEFAULT 0,
                progress_total integer NOT NULL DEFAULT 0,
                artifact_sha256 text REFERENCES canon_artifacts (sha256),
                error text,
                publish_when_ready boolean NOT NULL DEFAULT false,
                lease_until timestamptz,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                built_at timestamptz,
                UNIQUE NULLS NOT DISTINCT (tenant_id, number)
            )
            """,
            "CREATE INDEX canon_versions_queue ON canon_versions (created_at) WHERE state IN ('queued', 'building')",
            """
            CREATE TABLE canon_entries (
                version_id uuid NOT NULL REFERENCES canon_versions (id) ON DELETE CASCADE,
                tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
                entry_id text NOT NULL,
                ordinal integer NOT NULL,
                kind text NOT NULL,
                title text NOT NULL,
                body text NOT NULL,
                status text NOT NULL,
                tags text[] NOT NULL,
                links text[] NOT NULL,
                source text,
                file text NOT NULL,
                line integer,
                content_sha256 bytea NOT NULL,
                PRIMARY KEY (version_id, entry_id)
            )
            """,
            """
            CREATE TABLE canon_publications (
                tenant_id uuid UNIQUE NULLS NOT DISTINCT REFERENCES tenants (id) ON DELETE CASCADE,
                version_id uuid NOT NULL REFERENCES canon_versions (id),
                published_at timestamptz NOT NULL DEFAULT now(),
                published_by text NOT NULL
            )
            """,
            """
            CREATE TABLE canon_publication_log (
                id bigserial PRIMARY KEY,
                tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
                version_id uuid NOT NULL REFERENCES canon_versions (id) ON DELETE CASCADE,
                action text NOT NULL CHECK (action IN ('publish', 'rollback')),
                at timestamptz NOT NULL DEFAULT now(),
                by text NOT NULL
            )
            """,
            "CREATE INDEX canon_publication_log_owner ON canon_publication_log (tenant_id, id)",
            "REVOKE TRUNCATE ON canon_artifacts, canon_versions, canon_entries, canon_publications, canon_publication_log FROM {{app_role}}",
            // Artifacts are written by the builder's function only; the application reads them to
            // serve nodes (they are content-addressed and handed out by hash to nodes alone).
            "REVOKE INSERT, UPDATE, DELETE ON canon_artifacts FROM {{app_role}}",
        ]
        for table in tables {
            statements += [
                "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE \(table) FORCE ROW LEVEL SECURITY",
                // Everyone reads the base canon; a tenant reads its own rows.
                """
                CREATE POLICY canon_reads ON \(table) FOR SELECT
                    USING (tenant_id IS NULL OR \(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                // Writes: a tenant's own rows, or the operator path (the only way to the base canon).
                """
                CREATE POLICY canon_inserts ON \(table) FOR INSERT
                    WITH CHECK (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                """
                CREATE POLICY canon_updates ON \(table) FOR UPDATE
                    USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                    WITH CHECK (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                """
                CREATE POLICY canon_deletes ON \(table) FOR DELETE
                    USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                // The SECURITY DEFINER functions below run as the owner.
                "CREATE POLICY definer_functions ON \(table) TO CURRENT_USER USING (true) WITH CHECK (true)",
            ]
        }
        statements += [
            // Publishing changes what nodes enforce: append to the change log in the same transaction.
            """
            CREATE FUNCTION zaas_record_canon_publication() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
            DECLARE
                scopes uuid[];
                entity_keys text[];
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    SELECT array_agg(o.tenant_id), array_agg(coalesce(o.tenant_id::text, 'base'))
                    INTO scopes, entity_keys FROM old_rows o;
                ELSE
                    SELECT array_agg(n.tenant_id), array_agg(coalesce(n.tenant_id::text, 'base'))
                    INTO scopes, entity_keys FROM new_rows n;
                END IF;
                PERFORM zaas_append_config_changes('canon_publications', lower(TG_OP), scopes, entity_keys);
                RETURN NULL;
            END
            $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_record_canon_publication() FROM PUBLIC, {{app_role}}",
            """
            CREATE TRIGGER config_change_insert AFTER INSERT ON canon_publications
                REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_canon_publication()
            """,
            """
            CREATE TRIGGER config_change_update AFTER UPDATE ON canon_publications
                REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_canon_publication()
            """,
            """
            CREATE TRIGGER config_change_delete AFTER DELETE ON canon_publications
                REFERENCING OLD TABLE AS old_rows
                FOR EACH STATEMENT EXECUTE FUNCTION zaas_record_canon_publication()
            """,
            // What nodes need to find and verify each published version.
            """
            CREATE FUNCTION zaas_config_canon(p_tenants uuid[])
            RETURNS TABLE (tenant_id uuid, version_id uuid, label text, artifact_sha256 text, byte_count bigint)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT p.tenant_id, v.id, v.label, v.artifact_sha256, a.byte_count
                    FROM canon_publications p
                    JOIN canon_versions v ON v.id = p.version_id
                    JOIN canon_artifacts a ON a.sha256 = v.artifact_sha256
                    WHERE p.tenant_id IS NULL OR p_tenants IS NULL OR p.tenant_id = ANY (p_tenants)
                $$
            """,
            """
            CREATE FUNCTION zaas_canon_artifact(p_sha256 text) RETURNS bytea
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$ SELECT bytes FROM canon_artifacts WHERE sha256 = p_sha256 $$
            """,
            // The builder takes the oldest queued version, or one whose builder stopped renewing
            // its lease (a control plane that died mid-build).
            """
            CREATE FUNCTION zaas_canon_claim_build(p_lease_seconds integer)
            RETURNS TABLE (id uuid, tenant_id uuid, label text)
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY
                    UPDATE canon_versions v
                    SET state = 'building', lease_until = now() + make_interval(secs => p_lease_seconds),
                        progress_done = 0
                    WHERE v.id = (
                        SELECT c.id FROM canon_versions c
                        WHERE c.state = 'queued' OR (c.state = 'building' AND c.lease_until < now())
                        ORDER BY c.created_at
                        FOR UPDATE SKIP LOCKED
                        LIMIT 1
                    )
                    RETURNING v.id, v.tenant_id, v.label;
                END
                $$
            """,
            """
            CREATE FUNCTION zaas_canon_build_entries(p_version uuid)
            RETURNS TABLE (entry_id text, kind text, title text, body text, status text, tags text[],
                           links text[], source text)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT e.entry_id, e.kind, e.title, e.body, e.status, e.tags, e.links, e.source
                    FROM canon_entries e WHERE e.version_id = p_version ORDER BY e.ordinal
                $$
            """,
            """
            CREATE FUNCTION zaas_canon_build_progress(p_version uuid, p_done integer, p_total integer,
                                                      p_lease_seconds integer)
            RETURNS boolean
                LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    UPDATE canon_versions SET progress_done = p_done, progress_total = p_total,
                           lease_until = now() + make_interval(secs => p_lease_seconds)
                    WHERE id = p_version AND state = 'building'
                    RETURNING true
                $$
            """,
            // Stores the artifact (once per content), marks the version ready and publishes it if
            // it was asked to be; a failure records the reason instead.
            """
            CREATE FUNCTION zaas_canon_finish_build(p_version uuid, p_sha256 text, p_bytes bytea,
                                                    p_chunk_count integer, p_error text)
            RETURNS text
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    v canon_versions%ROWTYPE;
                BEGIN
                    SELECT * INTO v FROM canon_versions WHERE id = p_version AND state = 'building' FOR UPDATE;
                    IF NOT FOUND THEN RETURN 'gone'; END IF;
                    IF p_error IS NOT NULL THEN
                        UPDATE canon_versions SET state = 'failed', error = p_error, lease_until = NULL,
                               built_at = now()
                        WHERE id = p_version;
                        RETURN 'failed';
                    END IF;
                    INSERT INTO canon_artifacts (sha256, bytes, byte_count)
                    VALUES (p_sha256, p_bytes, length(p_bytes)) ON CONFLICT (sha256) DO NOTHING;
                    UPDATE canon_versions SET state = 'ready', artifact_sha256 = p_sha256, chunk_count = p_chunk_count,
                           progress_done = progress_total, lease_until = NULL, built_at = now(), error = NULL
                    WHERE id = p_version;
                    IF v.publish_when_ready THEN
                        INSERT INTO canon_publications (tenant_id, version_id, published_by)
                        VALUES (v.tenant_id, v.id, v.created_by)
                        ON CONFLICT (tenant_id) DO UPDATE
                            SET version_id = EXCLUDED.version_id, published_at = now(),
                                published_by = EXCLUDED.published_by;
                        INSERT INTO canon_publication_log (tenant_id, version_id, action, by)
                        VALUES (v.tenant_id, v.id, 'publish', v.created_by);
                        RETURN 'published';
                    END IF;
                    RETURN 'ready';
                END
                $$
            """,
        ]
        for function in [
            "zaas_config_canon(uuid[])", "zaas_canon_artifact(text)", "zaas_canon_claim_build(integer)",
            "zaas_canon_build_entries(uuid)", "zaas_canon_build_progress(uuid, integer, integer, integer)",
            "zaas_canon_finish_build(uuid, text, bytea, integer, text)",
        ] {
            statements += [
                "REVOKE EXECUTE ON FUNCTION \(function) FROM PUBLIC",
                "GRANT EXECUTE ON FUNCTION \(function) TO {{app_role}}",
            ]
        }
        return statements
    }

    /// Migration 7: what a build may reuse embeddings from — the artifact of the version it was
    /// derived from (its parent), else the one its owner has published.
    static let reuseStatements = [
        """
        CREATE FUNCTION zaas_canon_reuse_artifact(p_version uuid) RETURNS bytea
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                SELECT a.bytes
                FROM canon_versions v
                LEFT JOIN canon_versions parent ON parent.id = v.parent_id AND parent.state = 'ready'
                LEFT JOIN canon_publications p ON p.tenant_id IS NOT DISTINCT FROM v.tenant_id
                LEFT JOIN canon_versions published ON published.id = p.version_id
                JOIN canon_artifacts a ON a.sha256 = coalesce(parent.artifact_sha256, published.artifact_sha256)
                WHERE v.id = p_version
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_canon_reuse_artifact(uuid) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_canon_reuse_artifact(uuid) TO {{app_role}}",
    ]
}
