/// Migration 23: usage metered from the audit trail (issue 17; docs/billing.md).
///
/// Query events are rolled up as they are ingested, in the same statement that stores them:
/// only rows that statement inserted count (`ON CONFLICT DO NOTHING … RETURNING`), so an event
/// shipped twice counts once, and each lands in the hour and day (UTC) it happened in, however
/// late it arrives. Rollups are kept per tenant, key, outcome, status, model class and model:
/// queries, tokens in and out, model cost, and the sum of latencies; latencies of served
/// queries also go to a histogram per tenant and hour/day (`usage_latency_*`, fixed buckets).
/// `zaas_usage_verify` recomputes a range from the events and returns every difference;
/// `zaas_usage_rebuild` replaces a tenant's range with the recomputation (both operators only;
/// a rebuild is recorded in the operator audit). Tables under forced
/// row-level security: a tenant reads its own, the operator path all, nobody writes but the
/// functions.
enum UsageSchema {
    /// The latency histogram's bucket lower bounds in milliseconds (bucket 0 is below the first).
    /// Part of a shipped migration: never change it (the stored buckets are indexes into it).
    static let latencyBoundsMs: [Int] = [
        1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600,
        800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10_000, 12_000, 15_000, 20_000, 25_000,
        30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000,
    ]

    static let tenantMatches = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"

    /// The rollup tables, each with the same protection.
    static let tables = ["usage_hourly", "usage_daily", "usage_latency_hourly", "usage_latency_daily"]

    /// A query event's metered columns, from `inserted` (rows of audit_events).
    static let metered = """
        SELECT tenant_id, time, key_id, outcome, status,
               coalesce(event #>> '{answer,route,class}', CASE WHEN event ? 'answer' THEN 'extractive' ELSE '' END)
                   AS model_class,
               coalesce(event #>> '{answer,model_used}', '') AS model,
               coalesce((event ->> 'input_tokens')::bigint, 0) AS input_tokens,
               coalesce((event ->> 'output_tokens')::bigint, 0) AS output_tokens,
               coalesce((event ->> 'cost_nanodollars')::bigint, 0) AS cost_nanodollars,
               (event #>> '{timings_ms,total}')::float8 AS latency_ms,
               CASE WHEN outcome LIKE 'cache_%' THEN 'cache' ELSE 'computed' END AS served
        FROM inserted
        WHERE kind = 'query' AND tenant_id IS NOT NULL
        """

    /// Upserts of the four rollups from the CTE `metered` (as data-modifying CTEs, in a fixed
    /// order of rows so concurrent ingests lock rows in the same order).
    static func upserts(from source: String) -> String {
        let dims = "tenant_id, key_id, outcome, status, model_class, model"
        let sums = """
            count(*), sum(input_tokens), sum(output_tokens), sum(cost_nanodollars), \
            coalesce(sum(round(latency_ms))::bigint, 0)
            """
        let add = """
            queries = r.queries + excluded.queries, input_tokens = r.input_tokens + excluded.input_tokens,
            output_tokens = r.output_tokens + excluded.output_tokens,
            cost_nanodollars = r.cost_nanodollars + excluded.cost_nanodollars,
            latency_ms_sum = r.latency_ms_sum + excluded.latency_ms_sum, updated_at = now()
            """
        let bounds = "'{\(Self.latencyBoundsMs.map(String.init).joined(separator: ","))}'::float8[]"
        let served = "status = 200 AND outcome <> 'abandoned' AND latency_ms IS NOT NULL"
        return """
            hourly AS (
                INSERT INTO usage_hourly AS r (hour, \(dims), queries, input_tokens, output_tokens,
                                              cost_nanodollars, latency_ms_sum)
                SELECT date_trunc('hour', time, 'UTC'), \(dims), \(sums) FROM \(source)
                GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
                ON CONFLICT (tenant_id, hour, key_id, outcome, status, model_class, model) DO UPDATE SET \(add)
            ),
            daily AS (
                INSERT INTO usage_daily AS r (day, \(dims), queries, input_tokens, output_tokens,
                                             cost_nanodollars, latency_ms_sum)
                SELECT (time AT TIME ZONE 'UTC')::date, \(dims), \(sums) FROM \(source)
                GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
                ON CONFLICT (tenant_id, day, key_id, outcome, status, model_class, model) DO UPDATE SET \(add)
            ),
            latency_hourly AS (
                INSERT INTO usage_latency_hourly AS r (tenant_id, hour, served, bucket, count)
                SELECT tenant_id, date_trunc('hour', time, 'UTC'), served, width_bucket(latency_ms, \(bounds)), count(*)
                FROM \(source) WHERE \(served)
                GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
                ON CONFLICT (tenant_id, hour, served, bucket) DO UPDATE SET count = r.count + excluded.count
            ),
            latency_daily AS (
                INSERT INTO usage_latency_daily AS r (tenant_id, day, served, bucket, count)
                SELECT tenant_id, (time AT TIME ZONE 'UTC')::date, served, width_bucket(latency_ms, \(bounds)), count(*)
                FROM \(source) WHERE \(served)
                GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
                ON CONFLICT (tenant_id, day, served, bucket) DO UPDATE SET count = r.count + excluded.count
            )
            """
    }

    static let insertEvents = """
        INSERT INTO audit_events (time, id, tenant_id, kind, key_id, query_id, node, outcome, status,
                                  problem_type, cache, model_used, question_fingerprint, event)
        SELECT (j ->> 'time')::timestamptz, (j ->> 'id')::uuid, (j ->> 'tenant_id')::uuid, j ->> 'kind',
               (j ->> 'key_id')::uuid, (j ->> 'query_id')::uuid, p_node, j ->> 'outcome',
               (j ->> 'status')::smallint, j ->> 'problem_type', j ->> 'cache',
               j #>> '{answer,model_used}', j #>> '{question,fingerprint}', j
        FROM (SELECT e::jsonb AS j FROM unnest(p_events) e) s
        WHERE (j ->> 'tenant_id') IS NULL OR NOT ((j ->> 'tenant_id')::uuid = ANY (unknown_tenants))
        ON CONFLICT DO NOTHING
        RETURNING time, tenant_id, kind, key_id, outcome, status, event
        """

    static var statements: [String] {
        var statements: [String] = []
        for (table, period) in [("usage_hourly", "hour timestamptz"), ("usage_daily", "day date")] {
            let column = period.split(separator: " ")[0]
            statements.append(
                """
                CREATE TABLE \(table) (
                    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                    \(period) NOT NULL,
                    -- The key the query came with (for a 403, the key that was not allowed).
                    key_id uuid,
                    outcome text NOT NULL,
                    status smallint NOT NULL,
                    -- Empty when nothing answered; for a cache hit, the cached answer's.
                    model_class text NOT NULL,
                    model text NOT NULL,
                    queries bigint NOT NULL,
                    input_tokens bigint NOT NULL,
                    output_tokens bigint NOT NULL,
                    cost_nanodollars bigint NOT NULL,
                    latency_ms_sum bigint NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE NULLS NOT DISTINCT (tenant_id, \(column), key_id, outcome, status, model_class, model)
                )
                """)
        }
        for (table, period) in [("usage_latency_hourly", "hour timestamptz"), ("usage_latency_daily", "day date")] {
            let column = period.split(separator: " ")[0]
            statements.append(
                """
                CREATE TABLE \(table) (
                    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                    \(period) NOT NULL,
                    -- 'cache' (a hit of any kind) or 'computed'.
                    served text NOT NULL CHECK (served IN ('cache', 'computed')),
                    -- Index into the bounds (UsageSchema.latencyBoundsMs): 0 below the first.
                    bucket smallint NOT NULL,
                    count bigint NOT NULL,
                    PRIMARY KEY (tenant_id, \(column), served, bucket)
                )
                """)
        }
        for table in Self.tables {
            statements += [
                "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE \(table) FORCE ROW LEVEL SECURITY",
                """
                CREATE POLICY tenant_reads ON \(table) FOR SELECT
                    USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
                """,
                "CREATE POLICY definer_functions ON \(table) TO CURRENT_USER USING (true) WITH CHECK (true)",
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON \(table) FROM {{app_role}}",
            ]
        }
        statements += [
            // Migration 19's ingest, now also rolling up what it inserted, in the same statement.
            """
            CREATE OR REPLACE FUNCTION zaas_audit_ingest(p_node text, p_events text[], OUT stored integer,
                                                         OUT unknown_tenants uuid[])
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                BEGIN
                    SELECT coalesce(array_agg(DISTINCT x.tenant), '{}') INTO unknown_tenants
                    FROM (SELECT (e::jsonb ->> 'tenant_id')::uuid AS tenant FROM unnest(p_events) e) x
                    WHERE x.tenant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x.tenant);
                    WITH inserted AS (\(insertEvents)),
                    metered AS (\(metered)),
                    \(upserts(from: "metered"))
                    SELECT count(*)::integer INTO stored FROM inserted;
                END
                $$
            """,
            // The rollups of [p_from, p_to) (whole hours) recomputed from the events, against what
            // is stored: one row per difference (a side missing reads as zeros). Daily rows are
            // compared for the days wholly inside the range. Empty when they agree.
            """
            CREATE FUNCTION zaas_usage_verify(p_from timestamptz, p_to timestamptz)
            RETURNS TABLE (rollup text, tenant_id uuid, period timestamptz, key_id uuid, outcome text,
                           status smallint, model_class text, model text,
                           stored bigint[], recomputed bigint[])
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                #variable_conflict use_column
                BEGIN
                    IF zaas_current_operator() IS NULL THEN
                        RAISE EXCEPTION 'only operators verify usage' USING ERRCODE = '42501';
                    END IF;
                    RETURN QUERY
                    WITH inserted AS (
                        SELECT time, tenant_id, kind, key_id, outcome, status, event FROM audit_events
                        WHERE time >= p_from AND time < p_to
                    ),
                    metered AS (\(metered)),
                    recomputed_hourly AS (
                        SELECT tenant_id, date_trunc('hour', time, 'UTC') AS period, key_id, outcome, status,
                               model_class, model,
                               ARRAY[count(*), sum(input_tokens), sum(output_tokens), sum(cost_nanodollars),
                                     coalesce(sum(round(latency_ms))::bigint, 0)]::bigint[] AS figures
                        FROM metered GROUP BY 1, 2, 3, 4, 5, 6, 7
                    ),
                    stored_hourly AS (
                        SELECT tenant_id, hour AS period, key_id, outcome, status, model_class, model,
                               ARRAY[queries, input_tokens, output_tokens, cost_nanodollars, latency_ms_sum] AS figures
                        FROM usage_hourly WHERE hour >= p_from AND hour < p_to
                    ),
                    first_day AS (
                        SELECT CASE WHEN p_from = date_trunc('day', p_from, 'UTC') THEN (p_from AT TIME ZONE 'UTC')::date
                                    ELSE (p_from AT TIME ZONE 'UTC')::date + 1 END AS day
                    ),
                    recomputed_daily AS (
                        SELECT tenant_id, (period AT TIME ZONE 'UTC')::date AS day, key_id, outcome, status,
                               model_class, model,
                               ARRAY[sum(figures[1]), sum(figures[2]), sum(figures[3]), sum(figures[4]),
                                     sum(figures[5])]::bigint[] AS figures
                        FROM recomputed_hourly GROUP BY 1, 2, 3, 4, 5, 6, 7
                    ),
                    stored_daily AS (
                        SELECT tenant_id, day, key_id, outcome, status, model_class, model,
                               ARRAY[queries, input_tokens, output_tokens, cost_nanodollars, latency_ms_sum] AS figures
                        FROM usage_daily
                    ),
                    whole_days AS (
                        SELECT d::date AS day FROM first_day,
                            generate_series(first_day.day, (p_to AT TIME ZONE 'UTC')::date - 1, '1 day') d
                    )
                    SELECT 'hourly', coalesce(s.tenant_id, r.tenant_id), coalesce(s.period, r.period),
                           coalesce(s.key_id, r.key_id), coalesce(s.outcome, r.outcome), coalesce(s.status, r.status),
                           coalesce(s.model_class, r.model_class), coalesce(s.model, r.model),
                           coalesce(s.figures, '{0,0,0,0,0}'), coalesce(r.figures, '{0,0,0,0,0}')
                    FROM stored_hourly s FULL JOIN recomputed_hourly r
                        ON s.tenant_id = r.tenant_id AND s.period = r.period AND s.key_id IS NOT DISTINCT FROM r.key_id
                       AND s.outcome = r.outcome AND s.status = r.status AND s.model_class = r.model_class
                       AND s.model = r.model
                    WHERE s.figures IS DISTINCT FROM r.figures
                    UNION ALL
                    SELECT 'daily', coalesce(s.tenant_id, r.tenant_id),
                           (coalesce(s.day, r.day)::text || ' 00:00:00+00')::timestamptz,
                           coalesce(s.key_id, r.key_id), coalesce(s.outcome, r.outcome), coalesce(s.status, r.status),
                           coalesce(s.model_class, r.model_class), coalesce(s.model, r.model),
                           coalesce(s.figures, '{0,0,0,0,0}'), coalesce(r.figures, '{0,0,0,0,0}')
                    FROM (SELECT * FROM stored_daily WHERE day IN (SELECT day FROM whole_days)) s
                    FULL JOIN (SELECT * FROM recomputed_daily WHERE day IN (SELECT day FROM whole_days)) r
                        ON s.tenant_id = r.tenant_id AND s.day = r.day AND s.key_id IS NOT DISTINCT FROM r.key_id
                       AND s.outcome = r.outcome AND s.status = r.status AND s.model_class = r.model_class
                       AND s.model = r.model
                    WHERE s.figures IS DISTINCT FROM r.figures;
                END
                $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_usage_verify(timestamptz, timestamptz) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION zaas_usage_verify(timestamptz, timestamptz) TO {{app_role}}",
            // Replaces one tenant's rollups of [p_from, p_to) (whole hours) with a recomputation
            // from its events; the days touched are summed again from their hours. Refused for a
            // range older than the tenant's audit retention (its events are gone): the rollups
            // there are the only record. Returns the hourly rows written.
            """
            CREATE FUNCTION zaas_usage_rebuild(p_tenant uuid, p_from timestamptz, p_to timestamptz)
            RETURNS integer
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                DECLARE
                    operator uuid := zaas_current_operator();
                    kept_days integer;
                    written integer;
                BEGIN
                    IF operator IS NULL THEN
                        RAISE EXCEPTION 'only operators rebuild usage' USING ERRCODE = '42501';
                    END IF;
                    IF p_from <> date_trunc('hour', p_from, 'UTC') OR p_to <> date_trunc('hour', p_to, 'UTC')
                       OR p_from >= p_to THEN
                        RAISE EXCEPTION 'the range must be whole hours, from before to' USING ERRCODE = '22023';
                    END IF;
                    SELECT coalesce(q.audit_retention_days, r.audit_retention_days) INTO kept_days
                    FROM tenants t JOIN tiers r ON r.id = t.tier_id
                    LEFT JOIN quota_policies q ON q.tenant_id = t.id WHERE t.id = p_tenant;
                    IF kept_days IS NULL THEN
                        RAISE EXCEPTION 'no tenant %', p_tenant USING ERRCODE = '22023';
                    END IF;
                    IF p_from < now() - make_interval(days => kept_days) THEN
                        RAISE EXCEPTION 'events before % are past the tenant''s retention', now() - make_interval(days => kept_days)
                            USING ERRCODE = '22023';
                    END IF;
                    -- One rebuild or ingest at a time touches these rows.
                    LOCK TABLE usage_hourly IN SHARE ROW EXCLUSIVE MODE;
                    DELETE FROM usage_hourly WHERE tenant_id = p_tenant AND hour >= p_from AND hour < p_to;
                    DELETE FROM usage_latency_hourly WHERE tenant_id = p_tenant AND hour >= p_from AND hour < p_to;
                    WITH inserted AS (
                        SELECT time, tenant_id, kind, key_id, outcome, status, event FROM audit_events
                        WHERE tenant_id = p_tenant AND time >= p_from AND time < p_to
                    ),
                    metered AS (\(metered)),
                    hourly AS (
                        INSERT INTO usage_hourly (tenant_id, hour, key_id, outcome, status, model_class, model, queries,
                                                  input_tokens, output_tokens, cost_nanodollars, latency_ms_sum)
                        SELECT tenant_id, date_trunc('hour', time, 'UTC'), key_id, outcome, status, model_class, model,
                               count(*), sum(input_tokens), sum(output_tokens), sum(cost_nanodollars),
                               coalesce(sum(round(latency_ms))::bigint, 0)
                        FROM metered GROUP BY 1, 2, 3, 4, 5, 6, 7
                        RETURNING 1
                    ),
                    latency AS (
                        INSERT INTO usage_latency_hourly (tenant_id, hour, served, bucket, count)
                        SELECT tenant_id, date_trunc('hour', time, 'UTC'), served,
                               width_bucket(latency_ms, '{\(Self.latencyBoundsMs.map(String.init).joined(separator: ","))}'::float8[]),
                               count(*)
                        FROM metered WHERE status = 200 AND outcome <> 'abandoned' AND latency_ms IS NOT NULL
                        GROUP BY 1, 2, 3, 4
                    )
                    SELECT count(*)::integer INTO written FROM hourly;
                    -- The days touched, from their hours.
                    DELETE FROM usage_daily WHERE tenant_id = p_tenant
                        AND day >= (p_from AT TIME ZONE 'UTC')::date AND day <= ((p_to - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
                    INSERT INTO usage_daily (tenant_id, day, key_id, outcome, status, model_class, model, queries,
                                             input_tokens, output_tokens, cost_nanodollars, latency_ms_sum)
                    SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, key_id, outcome, status, model_class, model,
                           sum(queries), sum(input_tokens), sum(output_tokens), sum(cost_nanodollars), sum(latency_ms_sum)
                    FROM usage_hourly WHERE tenant_id = p_tenant
                        AND (hour AT TIME ZONE 'UTC')::date >= (p_from AT TIME ZONE 'UTC')::date
                        AND (hour AT TIME ZONE 'UTC')::date <= ((p_to - interval '1 microsecond') AT TIME ZONE 'UTC')::date
                    GROUP BY 1, 2, 3, 4, 5, 6, 7;
                    DELETE FROM usage_latency_daily WHERE tenant_id = p_tenant
                        AND day >= (p_from AT TIME ZONE 'UTC')::date AND day <= ((p_to - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
                    INSERT INTO usage_latency_daily (tenant_id, day, served, bucket, count)
                    SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, served, bucket, sum(count)
                    FROM usage_latency_hourly WHERE tenant_id = p_tenant
                        AND (hour AT TIME ZONE 'UTC')::date >= (p_from AT TIME ZONE 'UTC')::date
                        AND (hour AT TIME ZONE 'UTC')::date <= ((p_to - interval '1 microsecond') AT TIME ZONE 'UTC')::date
                    GROUP BY 1, 2, 3, 4;
                    INSERT INTO operator_audit (operator_id, tenant_id, table_name, operation, row_id)
                    VALUES (operator, p_tenant, 'usage_hourly', 'rebuild',
                            p_from::text || '/' || p_to::text || ': ' || written || ' hourly rows');
                    RETURN written;
                END
                $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_usage_rebuild(uuid, timestamptz, timestamptz) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION zaas_usage_rebuild(uuid, timestamptz, timestamptz) TO {{app_role}}",
            // A tenant's canon meters: overlay versions built (and failed) in [p_from, p_to), and
            // the bytes of the built artifacts its versions hold now. Artifacts are readable by
            // definer functions only, so this checks the scope itself: the tenant's own, or an
            // operator.
            """
            CREATE FUNCTION zaas_usage_canon(p_tenant uuid, p_from timestamptz, p_to timestamptz,
                                             OUT builds bigint, OUT failed_builds bigint, OUT stored_bytes bigint)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
                AS $$
                    SELECT (SELECT count(*) FROM canon_versions v WHERE v.tenant_id = p_tenant AND v.state = 'ready'
                                AND v.built_at >= p_from AND v.built_at < p_to),
                           (SELECT count(*) FROM canon_versions v WHERE v.tenant_id = p_tenant AND v.state = 'failed'
                                AND coalesce(v.built_at, v.created_at) >= p_from
                                AND coalesce(v.built_at, v.created_at) < p_to),
                           (SELECT coalesce(sum(a.byte_count), 0)::bigint FROM canon_artifacts a
                            WHERE a.sha256 IN (SELECT v.artifact_sha256 FROM canon_versions v
                                               WHERE v.tenant_id = p_tenant AND v.artifact_sha256 IS NOT NULL))
                    WHERE p_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
                       OR zaas_current_operator() IS NOT NULL
                $$
            """,
            "REVOKE EXECUTE ON FUNCTION zaas_usage_canon(uuid, timestamptz, timestamptz) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION zaas_usage_canon(uuid, timestamptz, timestamptz) TO {{app_role}}",
            // A deployment upgraded to this migration has events already: they are rolled up here,
            // once, as ingestion would have (the tables are empty, so nothing is counted twice).
            """
            WITH inserted AS (SELECT time, tenant_id, kind, key_id, outcome, status, event FROM audit_events),
            metered AS (\(metered)),
            \(upserts(from: "metered"))
            SELECT 1
            """,
        ]
        return statements
    }
}
