#!/usr/bin/env python3
"""Deterministic metric stream for anomalyd's end-to-end benchmark.

Writes NDJSON in anomalyd's native format, one event per line:

    {"series":"cpu_usage","labels":{"host":"h00042"},"ts":1767225600000,"value":41.2731}

Events go round-robin over the series in time order, as a fleet reports: one
event per series per interval. Each series has its own level, noise scale and
daily sinusoid; a small fraction of events (``--anomaly-rate``, 0.1% by
default) are spikes (one event off by 6 to 12 deviations) or level shifts (the
level moves by 5 to 10 deviations and stays). ``--labels-out`` writes where
they were injected so a harness can compute detection rates.

Every series draws from its own generator seeded by ``(seed, series index)``,
so a series' values do not depend on how many series or events are generated:
a longer or wider stream extends a shorter one. Standard library only.
"""

import argparse
import json
import math
import random
import sys

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


class Series:
    """One synthetic series: its parameters and its generator."""

    def __init__(self, seed, index):
        # A string seed is hashed (SHA-512) by `random`, so it is stable
        # across Python versions and runs, unlike hash().
        self.rng = rng = random.Random(f"{seed}:{index}")
        self.name = "cpu_usage"
        self.labels = {"host": f"h{index:05d}"}
        # Levels spread over orders of magnitude, as real fleets' metrics do.
        self.level = 10 ** rng.uniform(0.5, 3.0)
        self.sd = self.level * rng.uniform(0.01, 0.05)
        self.amplitude = self.level * rng.uniform(0.0, 0.3)
        self.phase = rng.uniform(0.0, 2 * math.pi)
        # Pre-rendered line prefix: the labels never change.
        self.prefix = (
            '{"series":' + json.dumps(self.name)
            + ',"labels":' + json.dumps(self.labels, separators=(",", ":"))
            + ',"ts":'
        )

    def next_value(self, ts_ms, anomaly_rate):
        """The value at ``ts_ms`` and the kind of anomaly injected, if any."""
        rng = self.rng
        kind = None
        u = rng.random()
        if u < anomaly_rate / 2:
            kind = "level_shift"
            self.level += rng.choice((-1, 1)) * rng.uniform(5, 10) * self.sd
        elif u < anomaly_rate:
            kind = "spike"
        day = 2 * math.pi * (ts_ms % DAY_MS) / DAY_MS
        value = self.level + self.amplitude * math.sin(day + self.phase) + rng.gauss(0.0, self.sd)
        if kind == "spike":
            value += rng.choice((-1, 1)) * rng.uniform(6, 12) * self.sd
        return value, kind


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, required=True, help="number of series")
    ap.add_argument("--events-per-series", type=int, required=True, help="events per series")
    ap.add_argument("--seed", type=int, default=1, help="seed of every generator (default 1)")
    ap.add_argument("--interval-ms", type=int, default=10_000, help="time between a series' events (default 10000)")
    ap.add_argument("--anomaly-rate", type=float, default=0.001, help="fraction of events made anomalous (default 0.001)")
    ap.add_argument("--out", required=True, help="NDJSON stream to write ('-' for stdout)")
    ap.add_argument("--labels-out", help="JSON file listing the injected anomalies")
    args = ap.parse_args()
    if args.series < 1 or args.events_per_series < 1:
        ap.error("--series and --events-per-series must be at least 1")

    series = [Series(args.seed, i) for i in range(args.series)]
    anomalies = []
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    with out:
        for t in range(args.events_per_series):
            ts = START_MS + t * args.interval_ms
            lines = []
            for i, s in enumerate(series):
                value, kind = s.next_value(ts, args.anomaly_rate)
                lines.append(f"{s.prefix}{ts},\"value\":{value:.4f}}}\n")
                if kind:
                    anomalies.append({
                        "series": s.name,
                        "labels": s.labels,
                        "index": t,
                        "line": t * args.series + i,
                        "kind": kind,
                    })
            out.write("".join(lines))

    if args.labels_out:
        with open(args.labels_out, "w", encoding="utf-8") as f:
            json.dump({
                "seed": args.seed,
                "series": args.series,
                "events_per_series": args.events_per_series,
                "anomalies": anomalies,
            }, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
