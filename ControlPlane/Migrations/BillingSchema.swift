/// Migration 24: billing (issue 17; docs/billing.md).
///
/// - `price_lists`: a tier's (or an Enterprise tenant's own) prices from a month on: monthly fee,
///   queries included, overage per 1 000 queries by class, model cost passed through with a
///   margin. Versioned by `effective_from`; a list is never changed, a later one supersedes it.
///   Money is in millionths of the currency unit (`_micros`). Everyone signed in reads the tiers'
///   lists, a tenant its own; only operators add.
/// - `billing_periods`: calendar months (UTC) and whether they are closed.
/// - `billing_lines`: what a closed period bills, frozen with its inputs: one line per tenant and
///   meter, and adjustment lines for usage that reached an earlier closed period after it closed.
///   Each line has an idempotency key for a billing system's import. Lines are written once, by
///   the closing transaction (operators), and never changed.
enum BillingSchema {
    static let tenantMatches = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"

    static let statements: [String] = [
        """
        CREATE TABLE price_lists (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            tier_id text REFERENCES tiers (id),
            tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
            -- The first day of the month it applies from.
            effective_from date NOT NULL CHECK (extract(day FROM effective_from) = 1),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            monthly_fee_micros bigint NOT NULL CHECK (monthly_fee_micros BETWEEN 0 AND 1000000000000000),
            included_queries bigint NOT NULL CHECK (included_queries BETWEEN 0 AND 1000000000000),
            -- {"extractive": micros, "local": …, "cloud": …, "cache": …} per 1 000 queries.
            overage_per_1k_micros jsonb NOT NULL CHECK (jsonb_typeof(overage_per_1k_micros) = 'object'),
            model_cost_margin_percent numeric(6, 2) NOT NULL CHECK (model_cost_margin_percent BETWEEN 0 AND 1000),
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((tier_id IS NULL) <> (tenant_id IS NULL)),
            UNIQUE NULLS NOT DISTINCT (tier_id, tenant_id, effective_from)
        )
        """,
        // The published prices, from the first month ZaaS bills.
        """
        INSERT INTO price_lists (tier_id, effective_from, currency, monthly_fee_micros, included_queries,
                                 overage_per_1k_micros, model_cost_margin_percent, created_by) VALUES
            ('free', '2026-01-01', 'USD', 0, 7440,
             '{"extractive": 0, "local": 0, "cloud": 0, "cache": 0}', 0, 'migration'),
            ('pro', '2026-01-01', 'USD', 49000000, 50000,
             '{"extractive": 500000, "local": 1000000, "cloud": 4000000, "cache": 100000}', 20, 'migration'),
            ('team', '2026-01-01', 'USD', 399000000, 500000,
             '{"extractive": 400000, "local": 800000, "cloud": 3500000, "cache": 80000}', 15, 'migration'),
            ('enterprise', '2026-01-01', 'USD', 2500000000, 5000000,
             '{"extractive": 300000, "local": 600000, "cloud": 3000000, "cache": 50000}', 10, 'migration')
        """,
        "ALTER TABLE price_lists ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE price_lists FORCE ROW LEVEL SECURITY",
        """
        CREATE POLICY price_reads ON price_lists FOR SELECT
            USING (tenant_id IS NULL OR \(tenantMatches) OR zaas_current_operator() IS NOT NULL)
        """,
        "CREATE POLICY operator_adds ON price_lists FOR INSERT WITH CHECK (zaas_current_operator() IS NOT NULL)",
        "REVOKE UPDATE, DELETE, TRUNCATE ON price_lists FROM {{app_role}}",
        """
        CREATE TABLE billing_periods (
            period date PRIMARY KEY CHECK (extract(day FROM period) = 1),
            state text NOT NULL CHECK (state IN ('open', 'closed')),
            closed_at timestamptz,
            closed_by text,
            CHECK ((state = 'closed') = (closed_at IS NOT NULL))
        )
        """,
        "REVOKE UPDATE, DELETE, TRUNCATE ON billing_periods FROM {{app_role}}",
        "GRANT UPDATE (state, closed_at, closed_by) ON billing_periods TO {{app_role}}",
        """
        CREATE TABLE billing_lines (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            -- The period whose invoice carries the line.
            period date NOT NULL REFERENCES billing_periods (period),
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            meter text NOT NULL CHECK (meter ~ '^[a-z][a-z0-9_]{0,63}$'),
            kind text NOT NULL CHECK (kind IN ('charge', 'adjustment')),
            -- For an adjustment: the closed period whose usage grew after it closed.
            adjusts_period date,
            quantity numeric(30, 9) NOT NULL,
            unit text NOT NULL,
            unit_price_micros numeric(30, 9) NOT NULL,
            amount_micros bigint NOT NULL,
            currency text NOT NULL,
            price_list_id uuid NOT NULL REFERENCES price_lists (id),
            -- The figures the line was computed from.
            inputs jsonb NOT NULL,
            idempotency_key text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((kind = 'adjustment') = (adjusts_period IS NOT NULL))
        )
        """,
        "CREATE INDEX billing_lines_period ON billing_lines (period, tenant_id)",
        "ALTER TABLE billing_lines ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE billing_lines FORCE ROW LEVEL SECURITY",
        """
        CREATE POLICY tenant_reads ON billing_lines FOR SELECT
            USING (\(tenantMatches) OR zaas_current_operator() IS NOT NULL)
        """,
        "CREATE POLICY operator_writes ON billing_lines FOR INSERT WITH CHECK (zaas_current_operator() IS NOT NULL)",
        "REVOKE UPDATE, DELETE, TRUNCATE ON billing_lines FROM {{app_role}}",
        // billing_periods: everyone reads the calendar; only operators open or close periods.
        "ALTER TABLE billing_periods ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE billing_periods FORCE ROW LEVEL SECURITY",
        "CREATE POLICY period_reads ON billing_periods FOR SELECT USING (true)",
        "CREATE POLICY operator_inserts ON billing_periods FOR INSERT WITH CHECK (zaas_current_operator() IS NOT NULL)",
        """
        CREATE POLICY operator_closes ON billing_periods FOR UPDATE
            USING (zaas_current_operator() IS NOT NULL AND state = 'open')
            WITH CHECK (zaas_current_operator() IS NOT NULL)
        """,
    ]
}
