#!/usr/bin/env bash
# anomalyd's end-to-end benchmark against its peers, on the same streams.
#
# Usage: tests/bench/run_e2e.sh            (from the repository root)
#
# 1. writes two deterministic streams with gen_stream.py (10,000 series x
#    300 events and 100,000 series x 120 events) into target/bench/, unless
#    they are there already;
# 2. runs `cargo bench --bench e2e -- run` on each: file replay and Kafka
#    (librdkafka's MockCluster in-process, then a tansu broker process, both
#    on loopback; one event per message, then 100 per NDJSON message) with
#    1 and 2 workers, the latency run at a fixed offered load on each
#    broker, CPU time and peak RSS (see tests/bench/e2e.rs);
# 3. runs tests/bench/peers/run_peers.sh (River, Random Cut Forest) on the
#    same stream files;
# 4. prints one markdown table with ours / peer ratios in events per
#    CPU-second.
#
# Knobs (environment): E2E_REPEAT (runs per measurement, default 2),
# E2E_ARGS (extra arguments to `e2e run`, e.g. "--no-replay" for the Kafka
# rows alone), SKIP_PEERS=1, STREAMS ("10k 100k"), BROKERS ("mock,tansu";
# tansu as tests/run.sh installs it, or $ANOMALYD_TEST_TANSU).
# The machine should be otherwise idle: every number here is CPU-bound.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=target/bench
mkdir -p "$out"
repeat=${E2E_REPEAT:-2}
streams=${STREAMS:-"10k 100k"}
log() { echo "run_e2e: $*" >&2; }

declare -A SERIES=([10k]=10000 [100k]=100000)
declare -A EVENTS=([10k]=300 [100k]=120)
# Kafka: the mock broker keeps the last 5 MB of each partition (~130,000 of
# these messages, lz4-compressed), so the topics get 32 and 48 partitions and
# the 100k stream's Kafka runs use its first 4,000,000 events.
declare -A KAFKA=([10k]="--partitions 32" [100k]="--partitions 48 --kafka-events 4000000")
# The latency run warms every series past its warm-up (120 events each)
# before the paced part; on the 100k stream that would be 12 M events, so it
# runs on the 10k stream only.
declare -A LATENCY=([10k]="" [100k]="--latency-rate 0")
# The autoencoder's model costs more than decoding, so its replay shows how
# the shards scale from 1 to 2 workers (the 10k stream is enough for that).
declare -A MODELS=([10k]="--autoencoder" [100k]="")

cargo bench --bench e2e --no-run
for s in $streams; do
    stream=$out/stream-$s.ndjson
    if [[ ! -s $stream ]]; then
        log "Writing $stream (${SERIES[$s]} series x ${EVENTS[$s]} events)."
        python3 tests/bench/gen_stream.py --series "${SERIES[$s]}" \
            --events-per-series "${EVENTS[$s]}" --out "$stream.tmp"
        mv "$stream.tmp" "$stream"
    fi
    rm -f "$out/e2e-$s.jsonl"
    # shellcheck disable=SC2086 # the knobs are word lists
    cargo bench --bench e2e -- run --stream "$stream" --name "$s" --repeat "$repeat" \
        --brokers "${BROKERS:-mock,tansu}" \
        ${KAFKA[$s]} ${LATENCY[$s]} ${MODELS[$s]} ${E2E_ARGS:-} --json-out "$out/e2e-$s.jsonl"
    if [[ ${SKIP_PEERS:-0} != 1 ]]; then
        tests/bench/peers/run_peers.sh "$stream" > "$out/peers-$s.jsonl"
    fi
done

ours=() peers=()
for s in $streams; do
    ours+=("$out/e2e-$s.jsonl")
    [[ -s $out/peers-$s.jsonl ]] && peers+=("$out/peers-$s.jsonl")
done
echo
echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
echo
cargo bench --bench e2e -- table --ours "${ours[@]}" --peers "${peers[@]}"
