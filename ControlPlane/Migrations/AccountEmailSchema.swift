/// Migration 10: one email, one account, across every kind of account.
///
/// Sign-in finds an account by email alone, so an address must name exactly one account whether
/// it belongs to an operator or to any tenant's admin. Each table's own unique index cannot see
/// the other table, so both feed one registry (`account_emails`, keyed by the lower-cased address)
/// from triggers; a second account with the same address fails with a unique violation whichever
/// table it is written to, and concurrent writers serialise on the registry's key.
///
/// Addresses that were already shared before this migration stay in the tables (the registry
/// keeps the first); sign-in refuses an address that names more than one account.
enum AccountEmailSchema {
    static let statements: [String] = [
        """
        CREATE TABLE account_emails (
            email text PRIMARY KEY CHECK (email = lower(email)),
            kind text NOT NULL CHECK (kind IN ('operator', 'admin')),
            account_id uuid NOT NULL
        )
        """,
        // Only the trigger functions below (running as the owner) touch the registry.
        "REVOKE ALL ON account_emails FROM {{app_role}}",
        "ALTER TABLE account_emails ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE account_emails FORCE ROW LEVEL SECURITY",
        "CREATE POLICY definer_functions ON account_emails TO CURRENT_USER USING (true) WITH CHECK (true)",
        """
        INSERT INTO account_emails (email, kind, account_id)
        SELECT email, 'operator', id FROM operators
        UNION ALL
        SELECT email, 'admin', id FROM admin_users
        ON CONFLICT (email) DO NOTHING
        """,
        """
        CREATE FUNCTION zaas_account_email_sync() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            DECLARE
                account_kind text := CASE TG_TABLE_NAME WHEN 'operators' THEN 'operator' ELSE 'admin' END;
            BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') THEN
                    DELETE FROM account_emails WHERE email = lower(OLD.email) AND account_id = OLD.id;
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    INSERT INTO account_emails (email, kind, account_id) VALUES (lower(NEW.email), account_kind, NEW.id);
                    RETURN NEW;
                END IF;
                RETURN OLD;
            END
            $$
        """,
        "REVOKE EXECUTE ON FUNCTION zaas_account_email_sync() FROM PUBLIC",
        """
        CREATE TRIGGER account_email_registry AFTER INSERT OR DELETE OR UPDATE OF email ON operators
            FOR EACH ROW EXECUTE FUNCTION zaas_account_email_sync()
        """,
        """
        CREATE TRIGGER account_email_registry AFTER INSERT OR DELETE OR UPDATE OF email ON admin_users
            FOR EACH ROW EXECUTE FUNCTION zaas_account_email_sync()
        """,
        // The bootstrap operator: created when its address is free, left alone when the operator
        // exists, and an error naming the conflict when a tenant admin holds the address.
        """
        CREATE OR REPLACE FUNCTION zaas_bootstrap_operator(p_email text, p_password_hash text) RETURNS boolean
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
            AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM account_emails WHERE email = lower(p_email) AND kind <> 'operator') THEN
                    RAISE EXCEPTION 'the bootstrap operator''s email belongs to a tenant admin'
                        USING ERRCODE = 'ZA001';
                END IF;
                INSERT INTO operators (email, password_hash) VALUES (lower(p_email), p_password_hash)
                ON CONFLICT (email) DO NOTHING;
                RETURN FOUND;
            END
            $$
        """,
    ]
}
