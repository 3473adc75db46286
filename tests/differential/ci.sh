#!/usr/bin/env bash
# Differential test for CI: the harness's offline unit tests (test_differential.py), then every
# recorded SpiceDB answer replayed against trellis (tests/differential/run.sh): CheckPermission
# (cases.json) and LookupResources/LookupSubjects (lookups.json). Fails on any disagreement not
# listed, with its reason, in known-differences.txt. Prints a closing `N passed, M failed`.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

py="$(bash "$here/python.sh")" || exit 2
if ! unit="$("$py" "$here/test_differential.py" 2>&1)"; then
    echo "$unit" | tail -n 40
    echo "differential: harness unit tests (test_differential.py) failed"
    exit 1
fi
echo "harness unit tests: $(echo "$unit" | grep -E '^Ran [0-9]+ tests' || echo ok)"

checks_log="$(mktemp)"
lookups_log="$(mktemp)"
trap 'rm -f "$checks_log" "$lookups_log"' EXIT
bash "$here/run.sh" --quiet >"$checks_log" 2>&1
checks_status=$?
bash "$here/run.sh" --lookups --quiet >"$lookups_log" 2>&1
lookups_status=$?

python3 "$here/ci_report.py" "$here/known-differences.txt" \
    checks "$checks_log" "$checks_status" lookups "$lookups_log" "$lookups_status"
