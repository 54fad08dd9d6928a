#!/usr/bin/env bash
# Scores anomalyd on NAB: builds the release binary, backtests every file of
# the NAB data directory with ONE configuration, and runs NAB's
# scorer (standard / reward_low_FP / reward_low_FN, per category).
#
# Usage: tests/bench/nab_evaluate.sh [NAB_DIR] [-- extra backtest args, e.g. --config FILE]
#   NAB_DIR: the NAB data directory (argument or $NAB_DIR; required).
#   $NABSCORE: NAB's scorer, nabscore.py (required).
#   $OUT sets the work directory (default: a fresh temporary directory).
# Opt-in: never run by `cargo test`. Labels are read only by the scorer.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
nab="${NAB_DIR:-}"
if [[ $# -gt 0 && "$1" != "--" ]]; then
  nab="$1"
  shift
fi
[[ "${1:-}" == "--" ]] && shift
scorer="${NABSCORE:-}"
if [[ -z "$nab" || ! -d "$nab" || ! -f "$scorer" ]]; then
  echo "nab_evaluate: needs the NAB data (NAB_DIR or the first argument: '$nab')" \
    "and NAB's scorer (NABSCORE: '$scorer'). This opt-in benchmark is not part of cargo test." >&2
  exit 2
fi
out="${OUT:-$(mktemp -d)}"

cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
"$repo/target/release/anomalyd" backtest --input "$nab" --output "$out/results" "$@"
python3 "$scorer" --detector-dir "anomalyd=$out/results" --data-dir "$nab" \
  --by-category --json "$out/nab.json"
echo "results: $out/results, scores: $out/nab.json" >&2
