-- The routing table the service reads: operators, number ranges, ported
-- numbers and rules, plus a version counter every change bumps and announces.
-- Operator passwords live apart, in operator_secrets, so the service's
-- read-only role can be given every table but that one.

CREATE TABLE operators (
    id                  text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]+$'),
    name                text NOT NULL CHECK (name <> ''),
    system_id           text NOT NULL CHECK (system_id <> ''),
    smpp_host           text NOT NULL CHECK (smpp_host <> ''),
    smpp_port           integer NOT NULL CHECK (smpp_port BETWEEN 1 AND 65535),
    tps_limit           bigint NOT NULL CHECK (tps_limit BETWEEN 1 AND 4294967295),
    alphanumeric_sender boolean NOT NULL,
    enabled             boolean NOT NULL
);

CREATE TABLE operator_secrets (
    operator_id text PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    password    text NOT NULL CHECK (password <> '')
);

CREATE TABLE number_ranges (
    -- E.164 digits without '+', country code first.
    prefix       text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,15}$'),
    country_code smallint NOT NULL CHECK (country_code BETWEEN 1 AND 999),
    -- Empty: the range's network is unknown.
    network      text NOT NULL DEFAULT '',
    CHECK (starts_with(prefix, country_code::text))
);

CREATE TABLE ported_numbers (
    e164    text PRIMARY KEY CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    -- 'cc:Name', as number_ranges names networks.
    network text NOT NULL CHECK (network ~ '^[1-9][0-9]{0,2}:.+$'),
    CHECK (starts_with(substr(e164, 2), split_part(network, ':', 1)))
);

CREATE TABLE rules (
    id          text PRIMARY KEY CHECK (id <> ''),
    -- '*' applies to every account.
    account     text NOT NULL CHECK (account <> ''),
    match_type  text NOT NULL
        CHECK (match_type IN ('default', 'country', 'network', 'prefix')),
    match_value text NOT NULL DEFAULT '',
    priority    bigint NOT NULL CHECK (priority BETWEEN 0 AND 4294967295),
    -- NULL: the rule is a BLOCK, the destination is refused.
    operator_id text REFERENCES operators (id),
    weight      bigint NOT NULL CHECK (weight BETWEEN 0 AND 4294967295),
    cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
    sender_type text NOT NULL
        CHECK (sender_type IN ('any', 'alphanumeric', 'numeric')),
    -- NULL: always; otherwise 'HH:MM-HH:MM' in UTC, may wrap midnight.
    window_utc  text CHECK (
        window_utc ~ '^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$'
        AND split_part(window_utc, '-', 1) <> split_part(window_utc, '-', 2)
    ),
    CHECK (operator_id IS NULL OR weight > 0),
    CHECK (CASE match_type
        WHEN 'default' THEN match_value = ''
        WHEN 'country' THEN match_value ~ '^[1-9][0-9]{0,2}$'
        WHEN 'network' THEN match_value ~ '^[1-9][0-9]{0,2}:.+$'
        WHEN 'prefix' THEN match_value ~ '^[1-9][0-9]{0,14}$'
    END)
);

CREATE INDEX rules_operator_id ON rules (operator_id);

-- One row: the routing table's version. Every committed change bumps it once
-- and announces the new value on the 'routing_table_changed' channel.
CREATE TABLE routing_table_version (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     bigint NOT NULL CHECK (version >= 0),
    -- The transaction that last bumped the version, so a transaction that
    -- rewrites several tables bumps it only once.
    bumped_by   xid8
);

INSERT INTO routing_table_version (singleton, version) VALUES (true, 0);

CREATE FUNCTION bump_routing_table_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_version bigint;
BEGIN
    UPDATE routing_table_version
       SET version = version + 1, bumped_by = pg_current_xact_id()
     WHERE bumped_by IS DISTINCT FROM pg_current_xact_id()
    RETURNING version INTO new_version;

    IF FOUND THEN
        PERFORM pg_notify('routing_table_changed', new_version::text);
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION bump_routing_table_version() FROM PUBLIC;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'operators', 'operator_secrets', 'number_ranges', 'ported_numbers', 'rules'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_table_version()',
            t || '_bump_version', t);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_table_version()',
            t || '_truncate_bumps_version', t);
    END LOOP;
END;
$$;
