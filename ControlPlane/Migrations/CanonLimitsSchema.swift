/// Migration 15: canon builds are shared fairly, and versions nobody published are pruned.
///
/// - `claimed_at` records when a build last started; the builder takes the oldest queued version
///   of the tenant it served least recently (never-served first), so one tenant's burst of
///   uploads cannot hold every other tenant's build behind it.
/// - `zaas_canon_prune` deletes an owner's versions that were never published beyond the newest
///   `p_keep` (never one queued or building, published, or in the publication log, which rollback
///   walks), then the artifacts no version uses any more.
enum CanonLimitsSchema {
    static let statements: [String] = [
        "ALTER TABLE canon_versions ADD COLUMN claimed_at timestamptz",
        "CREATE INDEX canon_versions_owner_created ON canon_versions (tenant_id, created_at)",
        """
        CREATE OR REPLACE FUNCTION zaas_canon_claim_build(p_lease_seconds integer)
        RETURNS TABLE (id uuid, tenant_id uuid, label text)
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            BEGIN
                RETURN QUERY
                UPDATE canon_versions v
                SET state = 'building', lease_until = now() + make_interval(secs => p_lease_seconds),
                    progress_done = 0, claimed_at = now()
                WHERE v.id = (
                    SELECT c.id FROM canon_versions c
                    WHERE c.state = 'queued' OR (c.state = 'building' AND c.lease_until < now())
                    ORDER BY (SELECT max(s.claimed_at) FROM canon_versions s
                              WHERE s.tenant_id IS NOT DISTINCT FROM c.tenant_id) NULLS FIRST,
                             c.created_at
                    FOR UPDATE SKIP LOCKED
                    LIMIT 1
                )
                RETURNING v.id, v.tenant_id, v.label;
            END
            $$
        """,
        """
        CREATE FUNCTION zaas_canon_prune(p_tenant uuid, p_keep integer) RETURNS integer
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            DECLARE
                pruned integer;
            BEGIN
                WITH candidates AS (
                    SELECT v.id, row_number() OVER (ORDER BY v.created_at DESC, v.number DESC) AS position
                    FROM canon_versions v
                    WHERE v.tenant_id IS NOT DISTINCT FROM p_tenant
                      AND v.state IN ('ready', 'failed')
                      AND NOT EXISTS (SELECT 1 FROM canon_publications p WHERE p.version_id = v.id)
                      AND NOT EXISTS (SELECT 1 FROM canon_publication_log l WHERE l.version_id = v.id)
                )
                DELETE FROM canon_versions v USING candidates c WHERE v.id = c.id AND c.position > p_keep;
                GET DIAGNOSTICS pruned = ROW_COUNT;
                IF pruned > 0 THEN
                    DELETE FROM canon_artifacts a
                    WHERE NOT EXISTS (SELECT 1 FROM canon_versions v WHERE v.artifact_sha256 = a.sha256);
                END IF;
                RETURN pruned;
            END
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_canon_prune(uuid, integer) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_canon_prune(uuid, integer) TO {{app_role}}",
    ]
}
