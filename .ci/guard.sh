#!/usr/bin/env bash
# memdiag guards its own reference engines: a small sweep of each engine's fixed variant,
# gated against the committed reports/baseline.json.
#
#   .ci/guard.sh            measure and gate (exit 1 on a regression)
#   .ci/guard.sh --accept   measure and write reports/baseline.json (review, then commit)
set -euo pipefail
cd "$(dirname "$0")/.."
MEMDIAG=${MEMDIAG:-.venv/bin/memdiag}
OUT=reports/ci
rm -rf "$OUT"

sweep() {  # sweep ENGINE PARAM...: one small configuration, three fresh processes
    local engine=$1
    shift
    local params=()
    for p in "$@"; do params+=(--param "$p"); done
    "$MEMDIAG" sweep "$engine" "${params[@]}" --repeat 3 --quiet --out "$OUT/$engine" >/dev/null
}

sweep player-sync variant=fixed records=2500
sweep import variant=stream records=200
sweep migration variant=slim items=4000
sweep record-sync variant=cleared cycles=30 batch=1000
sweep parallel variant=stream items=200

if [ "${1:-}" = "--accept" ]; then
    "$MEMDIAG" baseline "$OUT"/*/results.json -o reports/baseline.json
else
    "$MEMDIAG" gate "$OUT"/*/results.json --baseline reports/baseline.json --md "$OUT/gate.md"
fi
