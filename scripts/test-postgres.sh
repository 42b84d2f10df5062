#!/usr/bin/env bash
# Print the PostgreSQL URL the tests use (TEST_POSTGRES_URL), starting the local
# Debian cluster when it is installed and not running, and creating the test role once.
# Each test session then creates (and drops) its own uniquely named database with it.
set -euo pipefail
if [ -n "${TEST_POSTGRES_URL:-}" ]; then
    echo "$TEST_POSTGRES_URL"
    exit 0
fi
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "error: PostgreSQL is not installed (apt-get install postgresql) and" \
        "TEST_POSTGRES_URL is not set" >&2
    exit 1
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
if [ -z "${version:-}" ]; then
    echo "error: no PostgreSQL cluster (pg_createcluster)" >&2
    exit 1
fi
if [ "$status" != "online" ]; then
    pg_ctlcluster "$version" "$cluster" start >&2 || pg_lsclusters -h | grep -q online
fi
as_postgres() {
    if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi
}
role=newsletter_test
if [ "$(as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$role'\"")" != 1 ]; then
    as_postgres "psql -p $port -qc \"CREATE ROLE $role LOGIN CREATEDB PASSWORD '$role'\"" >&2 \
        || true  # another session made it meanwhile
fi
echo "postgresql://$role:$role@127.0.0.1:$port/postgres"
