#!/usr/bin/env bash
# Cross-validates anomalyd's defaults: runs each configuration variant below
# on the ops corpus (seeds 1 and 2, drawn by run.sh or here) and, when
# NAB_DIR and NABSCORE point at NAB's data and scorer, on NAB; then ablation.py chooses a variant per
# fold (leave one family / category out) and scores it on the held-out one.
#
# Usage: tests/bench/quality/ablation.sh
# Opt-in: never run by `cargo test`. Output under target/quality/ablation.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
work=$repo/target/quality
abl=$work/ablation
mkdir -p "$abl/configs"

# name|TOML (empty: the shipped defaults)
variants=(
    "default|"
    "no_level|[detector.threshold]
level_channel = false"
    "no_drift|[detector.threshold]
drift_channel = false"
    "no_stuck|[detector.threshold]
stuck_channel = false"
    "no_slow_channels|[detector.threshold]
level_channel = false
drift_channel = false
stuck_channel = false"
    "kind_quantile|[detector.threshold]
kind = \"quantile\""
    "kind_spot|[detector.threshold]
kind = \"spot\""
    "horizon_1000|[detector.threshold]
horizon_events = 1000"
    "horizon_20000|[detector.threshold]
horizon_events = 20000"
    "level_memory_1d|[detector.threshold]
level_memory_secs = 86400"
    "level_memory_7d|[detector.threshold]
level_memory_secs = 604800"
    "warmup_no_day|[detector.threshold]
warmup_secs = 0"
    "autoencoder|[detector.model]
kind = \"autoencoder\""
    "learning_rate_0.02|[detector.model]
learning_rate = 0.02"
    "learning_rate_0.20|[detector.model]
learning_rate = 0.2"
)

cargo build --release --locked --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/anomalyd

for seed in 1 2; do
    if [[ ! -f $work/corpus-$seed/labels.json ]]; then
        python3 "$here/gen_corpus.py" --out "$work/corpus-$seed" --seed "$seed" >&2
    fi
done
nab_dir=${NAB_DIR:-}
scorer=${NABSCORE:-}
have_nab=0
[[ -n $nab_dir && -d $nab_dir && -f $scorer ]] && have_nab=1

names=()
for v in "${variants[@]}"; do
    name=${v%%|*}
    names+=("$name")
    cfg=$abl/configs/$name.toml
    printf '%s\n' "${v#*|}" >"$cfg"
    echo "ablation: $name" >&2
    for seed in 1 2; do
        rm -rf "$abl/corpus-$seed/$name"
        "$bin" backtest --config "$cfg" --input "$work/corpus-$seed" \
            --output "$abl/corpus-$seed/$name" >/dev/null 2>&1
    done
    if [[ $have_nab -eq 1 ]]; then
        rm -rf "$abl/nab/$name"
        "$bin" backtest --config "$cfg" --input "$nab_dir" --output "$abl/nab/$name" >/dev/null 2>&1
    fi
done

list=$(
    IFS=,
    echo "${names[*]}"
)
nab_args=()
[[ $have_nab -eq 1 ]] && nab_args=(--nab "$nab_dir" --nabscore "$scorer" --nab-out "$abl/nab")
python3 "$here/ablation.py" --variants "$list" \
    --corpus "$work/corpus-1=$abl/corpus-1" --corpus "$work/corpus-2=$abl/corpus-2" \
    "${nab_args[@]}" | tee "$abl/ablation.md"
