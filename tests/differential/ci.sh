#!/usr/bin/env bash
# Differential test for CI: runs every recorded SpiceDB case against trellis
# (tests/differential/run.sh) and fails on any disagreement not listed, with
# its reason, in known-differences.txt. Prints a closing `N passed, M failed`.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="$(mktemp)"
bash "$here/run.sh" --quiet >"$log" 2>&1
status=$?
python3 - "$log" "$here/known-differences.txt" "$status" <<'PY'
import re, sys
log, known_path, status = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
known = {tuple(l.split()[:2]) for l in open(known_path) if l.strip() and not l.startswith("#")}
seed, failures = None, []
for line in log.splitlines():
    m = re.match(r"=== case seed (\d+)", line)
    if m:
        seed = m.group(1)
    m = re.match(r"\s+FAIL check #(\d+):", line)
    if m:
        failures.append((seed, m.group(1)))
totals = re.search(r"^(\d+) passed, (\d+) failed", log, re.M)
agreement = re.search(r"agreement: ([\d.]+%)", log)
if not totals:
    print(log[-4000:])
    sys.exit("differential run did not complete")
unexpected = [f for f in failures if f not in known]
passed, failed = int(totals.group(1)), int(totals.group(2))
print(f"SpiceDB agreement {agreement.group(1) if agreement else '?'}; "
      f"{len(failures) - len(unexpected)} known differences (known-differences.txt)")
for seed, index in unexpected:
    print(f"unexpected disagreement: case seed {seed}, check #{index}")
if unexpected or (status != 0 and not failures):
    print(log[-4000:])
print(f"differential: {passed + len(failures) - len(unexpected)} passed, {len(unexpected)} failed")
sys.exit(1 if unexpected or (status != 0 and not failures) else 0)
PY
