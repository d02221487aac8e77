/// Migration 17: what a canon build found worth telling its owner, kept with the version.
///
/// Today: entries holding sentences addressed to a model (`InjectionClassifier`), which the
/// artifact flags and no answer ever serves. `warnings` is a JSON array of
/// `{"type", "entry_id", "sentences", "excerpt"}`, written by the builder while the version is
/// still `building`, just before `zaas_canon_finish_build` marks it ready.
enum CanonWarningsSchema {
    static let statements: [String] = [
        """
        ALTER TABLE canon_versions ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]'::jsonb
            CHECK (jsonb_typeof(warnings) = 'array' AND octet_length(warnings::text) <= 262144)
        """,
        """
        CREATE FUNCTION zaas_canon_build_warnings(p_version uuid, p_warnings jsonb)
        RETURNS boolean
            LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
                UPDATE canon_versions SET warnings = p_warnings
                WHERE id = p_version AND state = 'building'
                RETURNING true
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_canon_build_warnings(uuid, jsonb) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION zaas_canon_build_warnings(uuid, jsonb) TO {{app_role}}",
    ]
}
