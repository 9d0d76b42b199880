-- The role the routing service connects as: it may read the routing table and
-- its version, and nothing else. In particular it cannot read operator
-- passwords. Roles are shared by every database of the cluster, so the role
-- is created only when missing, and a concurrent creation from another
-- database's migration is tolerated. The migration sets no password.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'routing_engine_ro') THEN
        BEGIN
            CREATE ROLE routing_engine_ro LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOINHERIT NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;

    EXECUTE format('GRANT CONNECT ON DATABASE %I TO routing_engine_ro', current_database());
END;
$$;

-- Since PostgreSQL 15 nobody but the owner may create in schema public; say
-- so for older clusters too. A migration run by a non-owner only warns here.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO routing_engine_ro;

GRANT SELECT ON
    operators, number_ranges, ported_numbers, rules, routing_table_version
TO routing_engine_ro;

REVOKE ALL ON operator_secrets FROM PUBLIC;
REVOKE ALL ON operator_secrets FROM routing_engine_ro;
