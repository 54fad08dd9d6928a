#!/usr/bin/env bash
# Runs anomalyd's benchmark peers on one stream and prints one JSON line each:
#   river: River's LinearRegression(optimizer=AdaGrad) on 8 lags + residual z-score
#   rcf:   AWS Random Cut Forest (crate krcflib), shingle 8, 50 trees, sample 256
#
# Usage: tests/bench/peers/run_peers.sh STREAM_FILE
#
# The peers come from their registries (PyPI, crates.io) into target/peers/;
# their code is never committed. Reruns reuse the venv and the build.
#
# Both peers are far slower than anomalyd, so each runs on part of the stream
# and the table compares events per CPU-second. Knobs (environment):
#   RIVER_MAX_EVENTS  River runs this prefix of the stream (default 200000, ~10 s)
#   RCF_MAX_EVENTS    the forest's event budget            (default 60000, ~20 s)
#   RCF_MAX_SERIES    the most forests it builds           (default 2000)
# River's cost per event hardly depends on a series' history, so a prefix is
# fair. A forest's does (no scoring before its 72nd value, trees filling up to
# 256 points), so the forest spends its budget on whole series, the first
# seen, instead. A forest holds ~1.2 MB from its creation on (krcflib 4.0.2),
# so 10,000 series would need ~12 GB: RCF_MAX_SERIES keeps it to ~2.5 GB.
# Events of the series not run are read and skipped; each line says what ran.
set -euo pipefail

RIVER_VERSION=0.26.1 # pinned, like krcflib in rcf/Cargo.toml.in, so reruns measure the same code
RIVER_MAX_EVENTS=${RIVER_MAX_EVENTS:-200000}
RCF_MAX_EVENTS=${RCF_MAX_EVENTS:-60000}
RCF_MAX_SERIES=${RCF_MAX_SERIES:-2000}

if [[ $# -ne 1 || ! -f $1 ]]; then
    echo "usage: $0 STREAM_FILE   (an NDJSON stream, see tests/bench/gen_stream.py)" >&2
    exit 2
fi
stream=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/../../.." && pwd)/target/peers
mkdir -p "$out"
log() { echo "run_peers: $*" >&2; }

# River, in a venv of its own so that nothing else on the machine changes.
py=$out/venv/bin/python
if ! "$py" -c "import river, sys; sys.exit(river.__version__ != '$RIVER_VERSION')" 2>/dev/null; then
    log "Installing river==$RIVER_VERSION into $out/venv."
    python3 -m venv "$out/venv"
    "$py" -m pip install --quiet --disable-pip-version-check "river==$RIVER_VERSION"
fi

# The forest harness: copy the template only when it changed, so cargo's own
# freshness check makes a rerun a no-op.
mkdir -p "$out/rcf"
cmp -s "$here/rcf/Cargo.toml.in" "$out/rcf/Cargo.toml" || cp "$here/rcf/Cargo.toml.in" "$out/rcf/Cargo.toml"
cmp -s "$here/rcf/main.rs" "$out/rcf/main.rs" || cp "$here/rcf/main.rs" "$out/rcf/main.rs"
log "Building the Random Cut Forest harness (krcflib from crates.io)."
cargo build --release --quiet --manifest-path "$out/rcf/Cargo.toml" --target-dir "$out/rcf/target"

log "River on up to $RIVER_MAX_EVENTS events of $stream."
"$py" "$here/river_peer.py" --max-events "$RIVER_MAX_EVENTS" "$stream"
log "Random Cut Forest on whole series of $stream, up to $RCF_MAX_EVENTS events and $RCF_MAX_SERIES series."
"$out/rcf/target/release/rcf-peer" --max-events "$RCF_MAX_EVENTS" --max-series "$RCF_MAX_SERIES" "$stream"
