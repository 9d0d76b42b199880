-- Development only: the read-only role routing-engine connects as, with a
-- throwaway password. The migrations find the role present, keep it and
-- grant it read access; they set no password themselves.
CREATE ROLE routing_engine_ro LOGIN PASSWORD 'dev-only-routing-engine-ro'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
