#!/usr/bin/env python3
"""River peer of anomalyd's end-to-end benchmark.

Reads an NDJSON stream in anomalyd's native format (see
``tests/bench/gen_stream.py``) and does, per series, what a River user would
write to mirror anomalyd's detector:

* features: the last 8 values of the series (``lag1`` is the latest; the
  first events of a series have fewer lags, which River's dict features
  allow);
* model: ``TargetStandardScaler(StandardScaler() | LinearRegression(
  optimizer=AdaGrad(lr)))``: anomalyd standardises its lags and its target
  with the series' running mean and deviation, and so does this;
* scorer: an exponentially weighted mean and variance (``river.stats``) of
  the absolute residual, read as a z-score, like anomalyd's EWMA threshold;
* test-then-train: ``predict_one`` scores the event before ``learn_one``.

It prints one JSON line with the throughput (CPU time from
``time.process_time()``, peak RSS from ``resource.getrusage``), counted from
the first line read, after imports. It does not judge the scores.
"""

import argparse
import json
import math
import resource
import sys
import time
from collections import deque

import river
from river import linear_model, optim, preprocessing, stats

LAGS = 8
LAG_NAMES = [f"lag{k}" for k in range(1, LAGS + 1)]
# z above which an event counts as flagged (once its series has all its lags):
# only a sanity check that the scorer reacts, reported as "flagged".
Z_FLAG = 4.0


class SeriesState:
    """Everything kept for one series."""

    __slots__ = ("model", "lags", "err_mean", "err_var")

    def __init__(self, lr, fading):
        self.model = preprocessing.TargetStandardScaler(
            regressor=preprocessing.StandardScaler()
            | linear_model.LinearRegression(optimizer=optim.AdaGrad(lr=lr))
        )
        self.lags = deque(maxlen=LAGS)
        self.err_mean = stats.EWMean(fading_factor=fading)
        self.err_var = stats.EWVar(fading_factor=fading)


def current_rss():
    """Current RSS in bytes (Linux ``/proc/self/statm``), 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", help="NDJSON stream to read")
    ap.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    ap.add_argument("--lr", type=float, default=0.05, help="AdaGrad learning rate (anomalyd's default 0.05)")
    ap.add_argument("--fading", type=float, default=0.05, help="weight of a new residual in the EW mean/variance (default 0.05)")
    args = ap.parse_args()

    states = {}
    events = flagged = 0
    z_sum = 0.0
    rss_start = current_rss()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    with open(args.stream, encoding="utf-8") as f:
        for line in f:
            if args.max_events is not None and events >= args.max_events:
                break
            ev = json.loads(line)
            value = float(ev["value"])
            key = (ev["series"], tuple(sorted(ev.get("labels", {}).items())))
            state = states.get(key)
            if state is None:
                state = states[key] = SeriesState(args.lr, args.fading)
            x = dict(zip(LAG_NAMES, reversed(state.lags)))
            # Test-then-train: predict before the model learns this event.
            residual = abs(value - state.model.predict_one(x))
            sd = math.sqrt(state.err_var.get())
            z = (residual - state.err_mean.get()) / sd if sd > 0 else 0.0
            z_sum += z
            if z > Z_FLAG and len(state.lags) == LAGS:
                flagged += 1
            state.model.learn_one(x, value)
            state.err_mean.update(residual)
            state.err_var.update(residual)
            state.lags.append(value)
            events += 1

    wall_s = time.perf_counter() - wall_start
    cpu_s = time.process_time() - cpu_start
    series = len(states)
    rss_growth = max(current_rss() - rss_start, 0)
    # Linux reports ru_maxrss in KiB.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "peer": "river",
        "events": events,
        "series": series,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "events_per_s": events / wall_s if wall_s else 0.0,
        "events_per_cpu_s": events / cpu_s if cpu_s else 0.0,
        "peak_rss_bytes": peak_rss,
        "rss_growth_per_series_bytes": rss_growth // series if series else 0,
        "flagged": flagged,
        "mean_z": z_sum / events if events else 0.0,
        "config": {"river": river.__version__, "lags": LAGS, "lr": args.lr, "fading": args.fading},
    }))


if __name__ == "__main__":
    sys.exit(main())
