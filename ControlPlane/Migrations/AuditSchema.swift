/// Migration 19: the audit trail (issue 16; docs/audit.md).
///
/// `audit_events` holds one row per event, range-partitioned by day on the event's own time, with
/// a default partition for times outside the days made so far (a node's clock far behind, an
/// event shipped after its day's partition went). The key is `(time, id)`: an event always
/// carries the same time, so storing it again is a no-op, whichever node ships it and however
/// often. Tenant rows under forced row-level security like every tenant table: a tenant reads
/// its own; the operator path reads all; nobody but the functions below writes. Partitions are
/// made and dropped by `zaas_audit_maintain` (they are never reachable directly: the application
/// role has no rights on them, and forced row-level security without a policy hides their rows).
enum AuditSchema {
    static let tenantMatches = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"

    static let statements: [String] =
        [
            """
            CREATE TABLE audit_events (
                time timestamptz NOT NULL,
                id uuid NOT NULL,
                -- NULL for a query refused before any tenant was known (an invalid key).
                tenant_id uuid,
                kind text NOT NULL CHECK (kind IN ('query', 'canon_update', 'admin')),
                key_id uuid,
                query_id uuid,
                -- The node whose credential shipped the event.
                node text NOT NULL,
                outcome text NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64),
                status smallint NOT NULL,
                problem_type text,
                cache text,
                model_used text,
                question_fingerprint text,
                received_at timestamptz NOT NULL DEFAULT now(),
                event jsonb NOT NULL,
                PRIMARY KEY (time, id)
            ) PARTITION BY RANGE (time)
            """,
            "CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, time, id)",
            "CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT",
            "REVOKE ALL ON audit_events_default FROM PUBLIC, {{app_role}}",
            "ALTER TABLE audit_events_default ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE audit_events_default FORCE ROW LEVEL SECURITY",
            "ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE audit_events FORCE ROW LEVEL SECURITY",
            """
            CREATE POLICY tenant_reads ON audit_events FOR SELECT
                USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
            """,
            "CREATE POLICY definer_functions ON audit_events TO CURRENT_USER USING (true) WITH CHECK (true)",
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_events FROM {{app_role}}",
            // A batch of events (canonical JSON, checked by the control plane) shipped by node
            // `p_node`: each stored once; events of tenants that do not exist are not stored, and
            // their tenants returned so the caller can refuse exactly those.
            """
            CREATE FUNCTION zaas_audit_ingest(p_node text, p_events text[], OUT stored integer, OUT unknown_tenants uuid[])
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                BEGIN
                    SELECT coalesce(array_agg(DISTINCT x.tenant), '{}') INTO unknown_tenants
                    FROM (SELECT (e::jsonb ->> 'tenant_id')::uuid AS tenant FROM unnest(p_events) e) x
                    WHERE x.tenant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x.tenant);
                    INSERT INTO audit_events (time, id, tenant_id, kind, key_id, query_id, node, outcome, status,
                                              problem_type, cache, model_used, question_fingerprint, event)
                    SELECT (j ->> 'time')::timestamptz, (j ->> 'id')::uuid, (j ->> 'tenant_id')::uuid, j ->> 'kind',
                           (j ->> 'key_id')::uuid, (j ->> 'query_id')::uuid, p_node, j ->> 'outcome',
                           (j ->> 'status')::smallint, j ->> 'problem_type', j ->> 'cache',
                           j #>> '{answer,model_used}', j #>> '{question,fingerprint}', j
                    FROM (SELECT e::jsonb AS j FROM unnest(p_events) e) s
                    WHERE (j ->> 'tenant_id') IS NULL OR NOT ((j ->> 'tenant_id')::uuid = ANY (unknown_tenants))
                    ON CONFLICT DO NOTHING;
                    GET DIAGNOSTICS stored = ROW_COUNT;
                END
                $$
            """,
            // The longest retention any tenant can have: partitions older than it hold nothing kept.
            """
            CREATE FUNCTION zaas_audit_longest_retention_days(p_unattributed_days integer) RETURNS integer
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT greatest(p_unattributed_days,
                                    (SELECT max(audit_retention_days) FROM tiers),
                                    (SELECT max(audit_retention_days) FROM quota_policies))
                $$
            """,
            // Partition upkeep, by one control plane at a time (an advisory lock; the others skip):
            // the days from yesterday to `p_days_ahead` ahead get their partitions (rows of such a day
            // that waited in the default partition move in); partitions whose whole day is older than
            // the longest retention are dropped; rows of the default partition that old are deleted.
            """
            CREATE FUNCTION zaas_audit_maintain(p_days_ahead integer, p_unattributed_days integer,
                                                OUT created integer, OUT dropped integer, OUT ran boolean)
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    longest integer := zaas_audit_longest_retention_days(p_unattributed_days);
                    today date := (now() AT TIME ZONE 'UTC')::date;
                    the_day date;
                    name text;
                    part record;
                BEGIN
                    created := 0;
                    dropped := 0;
                    ran := pg_try_advisory_xact_lock(hashtext('zaas_audit_maintain'));
                    IF NOT ran THEN
                        RETURN;
                    END IF;
                    FOR offset_days IN -1..p_days_ahead LOOP
                        the_day := today + offset_days;
                        name := 'audit_events_p' || to_char(the_day, 'YYYYMMDD');
                        CONTINUE WHEN to_regclass(name) IS NOT NULL;
                        -- Ingestion waits while partitions are made (the lock is taken before any
                        -- other, so the two never deadlock, and no row lands in the default
                        -- partition between the move and the attach).
                        IF created = 0 THEN
                            LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE;
                        END IF;
                        EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
                        EXECUTE format(
                            'WITH moved AS (DELETE FROM audit_events WHERE time >= %L::timestamptz AND time < %L::timestamptz RETURNING *) '
                            'INSERT INTO %I SELECT * FROM moved',
                            the_day::text || ' 00:00:00+00', (the_day + 1)::text || ' 00:00:00+00', name);
                        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC, {{app_role}}', name);
                        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
                        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', name);
                        EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                                       name, the_day::text || ' 00:00:00+00', (the_day + 1)::text || ' 00:00:00+00');
                        created := created + 1;
                    END LOOP;
                    FOR part IN
                        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                        WHERE i.inhparent = 'audit_events'::regclass AND c.relname ~ '^audit_events_p[0-9]{8}$'
                          AND to_date(substring(c.relname FROM 15), 'YYYYMMDD') + 1 <= today - longest
                    LOOP
                        EXECUTE format('DROP TABLE %I', part.relname);
                        dropped := dropped + 1;
                    END LOOP;
                    DELETE FROM audit_events WHERE time < now() - make_interval(days => longest);
                END
                $$
            """,
            // Deletes up to p_batch events past their tenant's retention (a deleted tenant's policy
            // still applies) and events of no tenant past p_unattributed_days; returns how many.
            """
            CREATE FUNCTION zaas_audit_expire(p_batch integer, p_unattributed_days integer) RETURNS integer
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    removed integer;
                BEGIN
                    WITH retention AS (
                        SELECT t.id AS tenant_id, coalesce(q.audit_retention_days, r.audit_retention_days) AS days
                        FROM tenants t JOIN tiers r ON r.id = t.tier_id LEFT JOIN quota_policies q ON q.tenant_id = t.id
                    ), doomed AS (
                        (SELECT e.time, e.id FROM audit_events e JOIN retention x ON x.tenant_id = e.tenant_id
                         WHERE e.time < now() - make_interval(days => x.days) LIMIT p_batch)
                        UNION ALL
                        (SELECT e.time, e.id FROM audit_events e
                         WHERE e.tenant_id IS NULL AND e.time < now() - make_interval(days => p_unattributed_days)
                         LIMIT p_batch)
                    )
                    DELETE FROM audit_events a USING doomed d WHERE a.time = d.time AND a.id = d.id;
                    GET DIAGNOSTICS removed = ROW_COUNT;
                    RETURN removed;
                END
                $$
            """,
        ]
        + [
            "zaas_audit_ingest(text, text[])", "zaas_audit_longest_retention_days(integer)",
            "zaas_audit_maintain(integer, integer)", "zaas_audit_expire(integer, integer)",
        ].flatMap { function in
            [
                "REVOKE EXECUTE ON FUNCTION \(function) FROM PUBLIC",
                "GRANT EXECUTE ON FUNCTION \(function) TO {{app_role}}",
            ]
        }
}
