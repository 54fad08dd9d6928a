#!/usr/bin/env bash
# Detection quality, one command: anomalyd (default config, default alert
# rule) beside River (Adagrad on lags), Random Cut Forest and NAB's windowed
# Gaussian, on the same files.
#
# Usage: tests/bench/quality/run.sh [--seeds "1 2 3"] [--peers "river rcf wgauss"] [--no-nab]
#
#  1. builds the release binary;
#  2. draws the labelled ops corpus (gen_corpus.py) once per seed into
#     target/quality/corpus-SEED (11 families x 6 series x 6000 rows, a third
#     anomaly-free);
#  3. backtests anomalyd on it with NO configuration (the shipped defaults)
#     and runs every peer on the same files;
#  4. prints, per seed: recall per anomaly kind, median detection delay,
#     false alarms per 10k events counted from the first row (warm-up
#     included) and how many fall in the first quarter of a file. anomalyd
#     is judged by its own alerts; a peer, which has no alert rule, by
#     `score >= T` with T chosen leaving the scored family out (the most
#     sensitive T within 2 false alarms per 10k events on the other
#     families);
#  5. when ASD_DIR (labelled metrics of real servers laid out as
#     shared/data/asd: labels-asd.json, test/<server>/<metric>.csv) and
#     SCORE_SERVERS (its scorer, score_servers.py) are set: the shared
#     servers, each series replayed from its first event, anomalyd at its
#     defaults beside the peers (thresholds chosen on the other servers by
#     the scorer's 2-fold split), with false alarms by day since each
#     series' first event and anomalyd's pages (incident notifications) per
#     10k events (servers.py);
#     and, when ASD_DIR also has the servers' unlabelled history (train/),
#     how young series alert: the 45 days replayed from day 1 and again
#     from every fourth day, young runs' alert onsets by day since their
#     first event beside the mature run's on the same rows (youth.py);
#  6. when NAB_DIR (a NAB data directory with combined_windows.json) and
#     NABSCORE (NAB's scorer, nabscore.py) are set: NAB's standard
#     profile with the threshold chosen leaving the scored category out
#     (LOCO), anomalyd also at its fixed default threshold 0.5, and the
#     optimistic score swept on all files for reference. RCF runs there with
#     NAB's own settings (shingle 1, 100 trees, time decay 1e-5).
#
# Work and results go to target/quality (tables also in *.md there).
# Opt-in: never run by `cargo test`. Needs python3; the peers fetch their
# pinned packages once (see peers/run.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
seeds="1 2 3"
peers="river rcf wgauss"
nab=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --no-nab) nab=0; shift ;;
    *) echo "usage: $0 [--seeds \"1 2\"] [--peers \"river rcf wgauss\"] [--no-nab]" >&2; exit 2 ;;
    esac
done
work=$repo/target/quality
mkdir -p "$work"
log() { echo "quality: $*" >&2; }

cargo build --release --locked --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/anomalyd

# Runs anomalyd and the peers on DATA into OUT/<detector>; prints the
# evaluator's --det arguments.
detect() {
    local data=$1 out=$2 rcf_opts=("${@:3}")
    rm -rf "$out"
    mkdir -p "$out"
    log "anomalyd on $data"
    "$bin" backtest --input "$data" --output "$out/anomalyd" >/dev/null
    for p in $peers; do
        log "$p on $data"
        if [[ $p == rcf && ${#rcf_opts[@]} -gt 0 ]]; then
            "$here/peers/run.sh" rcf "$data" "$out/rcf" -- "${rcf_opts[@]}" >&2
        else
            "$here/peers/run.sh" "$p" "$data" "$out/$p" >&2
        fi
    done
}

dets() {
    local out=$1 suffix=${2:-}
    echo "--det anomalyd=$out/anomalyd$suffix"
    for p in $peers; do echo "--det $p=$out/$p"; done
}

for seed in $seeds; do
    data=$work/corpus-$seed
    if [[ ! -f $data/labels.json ]]; then
        log "drawing corpus seed $seed"
        python3 "$here/gen_corpus.py" --out "$data" --seed "$seed" >&2
    fi
    detect "$data" "$work/out-corpus-$seed"
    echo
    echo "## Ops corpus, seed $seed"
    echo
    # shellcheck disable=SC2046
    python3 "$here/evaluate.py" corpus --data "$data" $(dets "$work/out-corpus-$seed") \
        --json "$work/corpus-$seed.json" | tee "$work/corpus-$seed.md"
done

asd_dir=${ASD_DIR:-}
score_servers=${SCORE_SERVERS:-}
if [[ -n $asd_dir && -f $asd_dir/labels-asd.json && -f $score_servers ]]; then
    out=$work/out-asd
    rm -rf "$out"
    mkdir -p "$out/asd"
    log "anomalyd on $asd_dir/test"
    "$bin" backtest --input "$asd_dir/test" --output "$out/asd/anomalyd" >/dev/null
    for p in $peers; do
        log "$p on $asd_dir/test"
        "$here/peers/run.sh" "$p" "$asd_dir/test" "$out/asd/$p" >&2
    done
    # anomalyd's onset scores judged as the peers' are (threshold chosen on
    # the other servers, at the same false-alarm budget): the comparison at
    # equal false alarms, beside its own alerts.
    ln -sfn anomalyd "$out/asd/onset-scores"
    dets=(--det anomalyd --det onset-scores)
    for p in $peers; do dets+=(--det "$p"); done
    echo
    echo "## Shared servers ($asd_dir)"
    echo
    python3 "$score_servers" --data "$asd_dir" --out "$out" --ds asd "${dets[@]}" \
        --json "$work/servers.json" >&2
    python3 "$here/servers.py" --scorer "$score_servers" --data "$asd_dir" --out "$out" \
        --json "$work/servers.json" "${dets[@]}" | tee "$work/servers.md"
    if [[ -d $asd_dir/train ]]; then
        log "anomalyd young and mature on $asd_dir/train + test"
        echo
        echo "## Young series against mature ones (unlabelled history + test days)"
        echo
        python3 "$here/youth.py" --bin "$bin" --data "$asd_dir" --out "$work/out-youth" \
            | tee "$work/youth.md"
    fi
else
    log "shared servers skipped: set ASD_DIR to a directory laid out as shared/data/asd and SCORE_SERVERS to its scorer"
fi

if [[ $nab -eq 1 ]]; then
    nab_dir=${NAB_DIR:-}
    scorer=${NABSCORE:-}
    if [[ -n $nab_dir && -d $nab_dir && -f $scorer ]]; then
        detect "$nab_dir" "$work/out-nab" --shingle-size 1 --trees 100 --time-decay 1e-5
        echo
        echo "## NAB ($nab_dir)"
        echo
        # shellcheck disable=SC2046
        python3 "$here/evaluate.py" nab --data "$nab_dir" --nabscore "$scorer" \
            $(dets "$work/out-nab" @0.5) --json "$work/nab.json" | tee "$work/nab.md"
    else
        log "NAB skipped: set NAB_DIR to a NAB data directory and NABSCORE to its scorer"
    fi
fi
