#!/usr/bin/env python3
"""False alarms on series with no anomaly, per alert threshold.

Generates three anomaly-free series (white noise; a daily cycle with noise;
a flat series with rare tiny jitter), backtests each with `anomalyd
backtest --threshold T` and counts alert episodes (0 -> 1 steps of the
`alert` column) per 10,000 events after warm-up.

    python3 tests/bench/false_alarms.py [--bin target/release/anomalyd]
"""
import argparse
import csv
import math
import os
import random
import subprocess
import tempfile

N = 20_000


def series(kind, rng):
    for i in range(N):
        if kind == "white":
            yield rng.gauss(50.0, 5.0)
        elif kind == "daily":
            yield 100 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 3)
        else:  # flat, with a 0.1 % chance of a one-quantum jitter
            yield 7.0 + (0.01 if rng.random() < 0.001 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/anomalyd")
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.8")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print("| series | " + " | ".join(f"threshold {t}" for t in thresholds) + " |")
    print("|---|" + "---|" * len(thresholds))
    with tempfile.TemporaryDirectory() as d:
        for kind in ("white", "daily", "flat"):
            rng = random.Random(7)
            path = os.path.join(d, f"{kind}.csv")
            with open(path, "w") as f:
                f.write("timestamp,value\n")
                for i, v in enumerate(series(kind, rng)):
                    f.write(f"{1_700_000_000 + 300 * i},{v:.6f}\n")
            cells = []
            for t in thresholds:
                out = os.path.join(d, f"{kind}-{t}.out.csv")
                subprocess.run(
                    [args.bin, "backtest", "--input", path, "--output", out, "--threshold", str(t)],
                    check=True, capture_output=True,
                )
                alerts = [r["alert"] for r in csv.DictReader(open(out))]
                episodes = sum(1 for a, b in zip(alerts, alerts[1:]) if a == "0" and b == "1")
                cells.append(f"{episodes / (N / 10_000):.1f}")
            print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
