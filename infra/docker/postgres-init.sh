#!/bin/sh
# PostgreSQL's first start in compose.yaml: the ZaaS database and its roles, as
# infra/start-services.sh makes them for `make run`: an owner that runs migrations, an application
# role that owns nothing and cannot bypass row-level security, and a monitoring role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE zaas_owner LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '$ZAAS_DB_OWNER_PASSWORD';
CREATE ROLE zaas_app LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS PASSWORD '$ZAAS_DB_APP_PASSWORD';
CREATE ROLE zaas_monitor LOGIN PASSWORD '$ZAAS_DB_MONITOR_PASSWORD';
GRANT pg_monitor TO zaas_monitor;
CREATE DATABASE zaas OWNER zaas_owner;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname zaas \
    -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; ALTER SCHEMA public OWNER TO zaas_owner;"
