#!/usr/bin/env bash
# Regenerates tests/schema/spicedb-verdicts.json: real SpiceDB's WriteSchema verdict (and ReadSchema
# output) for every schema in tests/schema/{valid,invalid}/, keyed by path relative to tests/schema.
# Fails if a valid/ schema is rejected or an invalid/ one accepted. Needs setup.sh to have run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
schema_dir="$(cd "$here/../schema" && pwd)"
out="$schema_dir/spicedb-verdicts.json"

cd "$schema_dir"
export LC_ALL=C
python3 "$here/oracle.py" schema-verdicts --as-map valid/*.zed invalid/*.zed >"$out.tmp"

python3 - "$out.tmp" <<'EOF'
import json, sys
verdicts = json.load(open(sys.argv[1]))
bad = [f"{name}: accepted={v['accepted']} {v.get('code')} {v.get('message') or ''}".strip()
       for name, v in sorted(verdicts.items())
       if v["accepted"] is not name.startswith("valid/")]
for line in bad:
    print("unexpected verdict:", line, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

mv "$out.tmp" "$out"
echo "wrote $out ($(grep -c '"accepted"' "$out") schemas)"
