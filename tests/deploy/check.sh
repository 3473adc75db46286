#!/usr/bin/env bash
# Validates the deployment offline, since no Docker engine or cluster runs
# here: the Kubernetes manifests in config/kubernetes against the
# Kubernetes 1.30 schemas (kubernetes-validate, strict), the manifests and
# the Dockerfile against checkov's policies (offline: --skip-download), and
# their wiring to each other and to the binary (check_wiring.py). Prints a
# closing `N passed, M failed`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${DEPLOY_CHECK_VENV:-${TMPDIR:-/tmp}/trellis-deploy-venv}"
want="kubernetes-validate==1.37.0 checkov==3.3.30 pyyaml==6.0.2"
stamp="$venv/.trellis-pins"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$stamp"
fi
bin="${TRELLIS_BIN:-$root/target/debug/trellis}"

passed=0
failed=0
step() {
  local name="$1"
  shift
  if "$@"; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}

cd "$root"
step "manifests match the Kubernetes 1.30 schemas" \
  "$venv/bin/kubernetes-validate" --strict --quiet -k 1.30.0 config/kubernetes/*.yaml
# BC_SKIP_MAPPING and --skip-download keep checkov from calling home.
step "checkov: Kubernetes manifests" env BC_SKIP_MAPPING=TRUE \
  "$venv/bin/checkov" --quiet --compact --skip-download --framework kubernetes -d config/kubernetes
step "checkov: Dockerfile" env BC_SKIP_MAPPING=TRUE \
  "$venv/bin/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile
step "manifests, Dockerfile and binary are wired together" \
  "$venv/bin/python" "$here/check_wiring.py" "$root" "$bin"

echo "deploy: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
