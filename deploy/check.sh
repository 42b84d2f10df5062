#!/usr/bin/env bash
# Check the systemd units with `systemd-analyze verify` (CI runs this where systemd exists).
#
# verify insists that every ExecStart binary exists, so the units are checked from a
# temporary copy whose /opt/newsletter/bin/newsletter points at a stand-in executable;
# nothing is installed or started. Exit 0 when every unit passes, 1 otherwise, and 0 with
# a note when systemd-analyze is not installed (the unit *commands* are checked by
# tests/test_deploy.py everywhere).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary=/opt/newsletter/bin/newsletter

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "deploy/check.sh: systemd-analyze not found; unit verification not run" >&2
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$work/newsletter"
chmod +x "$work/newsletter"
for unit in "$here"/*.service "$here"/*.timer; do
    sed "s#${binary}#${work}/newsletter#g" "$unit" >"$work/$(basename "$unit")"
done

status=0
for unit in "$work"/*.service "$work"/*.timer; do
    # verify prints problems on stderr and may exit 0 on warnings: fail on any output.
    out="$(cd "$work" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$(basename "$unit")" 2>&1)" || status=1
    out="$(printf '%s\n' "$out" | grep -v -e '^$' || true)"
    if [ -n "$out" ]; then
        echo "$(basename "$unit"):" >&2
        printf '%s\n' "$out" | sed 's/^/  /' >&2
        status=1
    else
        echo "$(basename "$unit"): ok"
    fi
done
exit "$status"
