/// Every migration this binary knows, in order. Append only: never edit or reorder an entry
/// that has shipped (the checksum check refuses to start if one changed).
public enum Migrations {
    public static let all: [Migration] = [
        Migration(
            version: 1,
            name: "baseline_privileges",
            statements: [
                // Nobody but the owner creates objects; the application role only uses them.
                "REVOKE ALL ON SCHEMA public FROM PUBLIC",
                "GRANT USAGE ON SCHEMA public TO {{app_role}}",
                """
                ALTER DEFAULT PRIVILEGES IN SCHEMA public
                    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {{app_role}}
                """,
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {{app_role}}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {{app_role}}",
                // The application reads which migrations ran (health), and may not change that record.
                "GRANT SELECT ON zaas_schema_migrations TO {{app_role}}",
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON zaas_schema_migrations FROM {{app_role}}",
            ]
        ),
        Migration(version: 2, name: "tenancy_and_row_level_security", statements: TenancySchema.statements),
        Migration(version: 3, name: "login_and_session_gates", statements: AccessFunctions.statements),
        Migration(version: 4, name: "config_distribution", statements: ConfigDistributionSchema.statements),
        Migration(version: 5, name: "statement_level_change_log", statements: StatementChangeLog.statements),
        Migration(version: 6, name: "canon_versions_and_artifacts", statements: CanonSchema.statements),
        Migration(version: 7, name: "canon_build_reuse", statements: CanonSchema.reuseStatements),
        Migration(version: 8, name: "answer_cache", statements: AnswerCacheSchema.statements),
        Migration(version: 9, name: "semantic_cache_threshold", statements: SemanticThresholdSchema.statements),
        Migration(version: 10, name: "account_email_registry", statements: AccountEmailSchema.statements),
        Migration(version: 11, name: "tenant_wide_buckets_and_key_caps", statements: TierLimitsSchema.statements),
        Migration(version: 12, name: "canon_artifacts_definer_only", statements: ArtifactScopeSchema.statements),
        Migration(version: 13, name: "config_version_advance", statements: ConfigAdvanceSchema.statements),
        Migration(version: 14, name: "node_credentials", statements: NodeCredentialSchema.statements),
        Migration(version: 15, name: "canon_fair_builds_and_pruning", statements: CanonLimitsSchema.statements),
        Migration(version: 16, name: "model_catalog", statements: ModelCatalogSchema.statements),
        Migration(version: 17, name: "canon_build_warnings", statements: CanonWarningsSchema.statements),
        Migration(version: 18, name: "routing_threshold", statements: RoutingThresholdSchema.statements),
        Migration(version: 19, name: "audit_events", statements: AuditSchema.statements),
        Migration(version: 20, name: "raw_questions_opt_in", statements: RawQuestionsSchema.statements),
        Migration(version: 21, name: "audit_exports_and_erasure", statements: AuditExportSchema.statements),
        Migration(version: 22, name: "config_changes_audited", statements: ChangeAuditSchema.statements),
        Migration(version: 23, name: "usage_rollups", statements: UsageSchema.statements),
        Migration(version: 24, name: "billing", statements: BillingSchema.statements),
        Migration(version: 25, name: "large_local_model_class", statements: LargeLocalSchema.statements),
        Migration(version: 26, name: "async_model_classes", statements: AsyncClassesSchema.statements),
        Migration(version: 27, name: "node_enrollment", statements: NodeEnrollmentSchema.statements),
    ]

    public static var latestVersion: Int { all.last?.version ?? 0 }
}
