#!/usr/bin/env bash
# Install the package with its test and browser extras, then lint, type-check and run
# the tests (the browser tests drive Debian's chromium through the `browser` extra).
# pytest's exit code 5 (no tests collected) is a failure here, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[test,browser]'
python3 -m ruff check newsletter tests benchmarks
python3 -m ruff format --check newsletter tests benchmarks
python3 -m mypy
# The PostgreSQL tests need a server: start the local cluster if it is installed.
if url="$(bash scripts/test-postgres.sh)"; then
    export TEST_POSTGRES_URL="$url"
else
    echo "warning: no PostgreSQL for the tests: they will fail" >&2
fi
set +e
python3 -m pytest -W error -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
