/// Migration 25: the `large-local` model class (the AirLLM sidecar; docs/airllm.md). Catalog
/// entries may be of it, and tiers and quota policies may allow it. Pro, Team and Enterprise allow
/// it from now on: it runs on the operator's own machines, like `local`, so no question leaves
/// them. The tiers' change reaches nodes through the change log like any other. Each tier gets a
/// price list from the month after the upgrade that prices `large-local` queries at twice its
/// `local` ones (slower, larger models on the same machines); months before keep their lists.
enum LargeLocalSchema {
    static let statements: [String] = [
        "ALTER TABLE model_backends DROP CONSTRAINT model_backends_model_class_check",
        """
        ALTER TABLE model_backends ADD CONSTRAINT model_backends_model_class_check
            CHECK (model_class IN ('local', 'cloud', 'large-local'))
        """,
        "ALTER TABLE tiers DROP CONSTRAINT tiers_model_classes_check",
        """
        ALTER TABLE tiers ADD CONSTRAINT tiers_model_classes_check
            CHECK (cardinality(model_classes) > 0 AND model_classes <@ ARRAY['local', 'cloud', 'large-local'])
        """,
        "ALTER TABLE quota_policies DROP CONSTRAINT quota_policies_model_classes_check",
        """
        ALTER TABLE quota_policies ADD CONSTRAINT quota_policies_model_classes_check
            CHECK (cardinality(model_classes) > 0 AND model_classes <@ ARRAY['local', 'cloud', 'large-local'])
        """,
        """
        UPDATE tiers SET model_classes = model_classes || ARRAY['large-local']
        WHERE id IN ('pro', 'team', 'enterprise') AND NOT model_classes @> ARRAY['large-local']
        """,
        // Price lists take rows only on the operator path (forced row-level security): this
        // transaction acts as the system operator, as the scheduled billing closer does.
        "SELECT set_config('app.operator_id', '00000000-0000-0000-0000-000000000000', true)",
        """
        INSERT INTO price_lists (tier_id, effective_from, currency, monthly_fee_micros, included_queries,
                                 overage_per_1k_micros, model_cost_margin_percent, created_by)
        SELECT DISTINCT ON (tier_id) tier_id, date_trunc('month', now() + interval '1 month')::date, currency,
               monthly_fee_micros, included_queries,
               overage_per_1k_micros || jsonb_build_object('large-local',
                   2 * coalesce((overage_per_1k_micros ->> 'local')::bigint, 0)),
               model_cost_margin_percent, 'migration'
        FROM price_lists
        WHERE tier_id IN (SELECT id FROM tiers WHERE model_classes @> ARRAY['large-local'])
          AND effective_from <= date_trunc('month', now() + interval '1 month')::date
        ORDER BY tier_id, effective_from DESC
        ON CONFLICT DO NOTHING
        """,
    ]
}
