#!/usr/bin/env bash
# Runs one peer of the detection-quality benchmark on a data directory.
#
# Usage: tests/bench/quality/peers/run.sh PEER DATA_DIR OUT_DIR [-- FOREST OPTIONS]
#   PEER is river, rcf or wgauss (see README.md beside this script).
#   For every DATA_DIR/<category>/<name>.csv (timestamp,value) it writes
#   OUT_DIR/<category>/<name>.csv (timestamp,anomaly_score), one row per
#   data row, and prints one line: peer, files, rows, bad values, seconds.
#   Peer rcf only: options after -- go to the forest program (rcf/main.rs),
#   e.g. `-- --shingle-size 1 --trees 100 --time-decay 1e-5` (NAB's own run).
#
# What a peer needs comes from its registry into target/ (never committed),
# once; reruns reuse it:
#   river   river==0.26.1 (PyPI) in the venv target/peers/venv, shared with
#           tests/bench/peers/run_peers.sh, which pins the same version
#   rcf     krcflib =4.0.2 (crates.io), built in target/quality-peers/rcf
#           from rcf/ with its pinned Cargo.lock.in
#   wgauss  nothing but python3
# Opt-in: never run by `cargo test`.
set -euo pipefail

RIVER_VERSION=0.26.1 # the pin of tests/bench/peers/run_peers.sh

usage() {
    echo "usage: $0 river|rcf|wgauss DATA_DIR OUT_DIR   or   $0 rcf DATA_DIR OUT_DIR -- FOREST OPTIONS" >&2
    exit 2
}
[[ $# -ge 3 ]] || usage
case $1 in river | rcf | wgauss) ;; *) usage ;; esac
[[ $# -eq 3 || ($1 == rcf && $4 == --) ]] || usage
peer=$1 data=$2 out=$3
shift 3
if [[ ! -d $data ]]; then
    echo "run.sh: data directory $data does not exist" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
target=$(cd "$here/../../../.." && pwd)/target
log() { echo "run.sh: $*" >&2; }

case $peer in
wgauss)
    exec python3 "$here/peers.py" wgauss "$data" "$out"
    ;;
river)
    venv=$target/peers/venv
    py=$venv/bin/python
    if ! "$py" -c "import river, sys; sys.exit(river.__version__ != '$RIVER_VERSION')" 2>/dev/null; then
        log "Installing river==$RIVER_VERSION into $venv."
        python3 -m venv "$venv"
        "$py" -m pip install --quiet --disable-pip-version-check "river==$RIVER_VERSION"
    fi
    exec "$py" "$here/peers.py" river "$data" "$out"
    ;;
rcf)
    build=$target/quality-peers/rcf
    mkdir -p "$build"
    # Copy only what changed, so cargo's own freshness check makes a rerun a no-op.
    for pair in Cargo.toml.in:Cargo.toml Cargo.lock.in:Cargo.lock main.rs:main.rs; do
        src=$here/rcf/${pair%%:*} dst=$build/${pair##*:}
        cmp -s "$src" "$dst" || cp "$src" "$dst"
    done
    log "Building the Random Cut Forest peer (krcflib from crates.io)."
    cargo build --release --locked --quiet --manifest-path "$build/Cargo.toml" --target-dir "$build/target"
    exec python3 "$here/peers.py" rcf "$data" "$out" --rcf-bin "$build/target/release/rcf-quality-peer" "$@"
    ;;
esac
