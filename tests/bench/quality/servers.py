#!/usr/bin/env python3
"""The shared servers' table: anomalyd beside the peers on labelled metrics of
real servers, scored by alert onsets the way the project is judged.

    servers.py --scorer score_servers.py --data ASD_DIR --out OUT --json JSON --det NAME [...]

JSON is what ``score_servers.py --json`` wrote for OUT (its 2-fold thresholds
for the peers: chosen on the other servers); this script reuses the scorer's
own definitions (windows, onsets, false alarms) through its module, and adds
what the scorer does not print:

* false alarms per 10,000 events by day since each series' first event
  (day 1 is anomalyd's warm-up), so a burst after warm-up shows;
* for anomalyd, pages per 10,000 events: incident notifications that open an
  incident (``OUT/asd/anomalyd/incidents.csv`` from the backtest, when it
  wrote one), beside its false alarms.

It prints a Markdown table. Opt-in: never run by ``cargo test``.
"""

import argparse
import csv
import importlib.util
import json
import os
import sys

import numpy as np


def load_scorer(path):
    spec = importlib.util.spec_from_file_location("score_servers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pages(out):
    """Incident notifications that open an incident, or None."""
    path = os.path.join(out, "asd", "anomalyd", "incidents.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return sum(1 for r in rows if r.get("opens") == "1")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--scorer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--det", action="append", required=True)
    args = ap.parse_args(argv)
    sc = load_scorer(args.scorer)
    labels = json.load(open(os.path.join(args.data, "labels-asd.json")))
    per_day = 86400 // labels["interval_s"]
    rels = sorted(labels["series"])
    series = [sc.Series(r, labels["series"][r], per_day) for r in rels]
    fold_idx, _ = sc.folds_of(series)
    report = json.load(open(args.json))["detectors"]
    days = [1, 2, 3]
    print("| detector | per-metric recall | per-incident recall | false alarms / 10k events | "
          "day 1 | day 2 | day 3 | day 4 on | pages / 10k events |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for det in args.det:
        base = os.path.join(args.out, "asd", det)
        is_ad = det.startswith("anomalyd")
        loaded = [sc.read_output(os.path.join(base, r), is_ad) for r in rels]
        onsets = [None] * len(series)
        if is_ad:
            onsets = [sc.onsets_from_alert(al) for _, al, _ in loaded]
        else:
            for k, idx in enumerate(fold_idx):
                t = report[det]["folds"][k]["threshold"]
                for i in idx:
                    onsets[i] = sc.onsets_from_scores(loaded[i][0], t)
        fa_by_day = np.zeros(len(days) + 1)
        events_by_day = np.zeros(len(days) + 1)
        for s, on in zip(series, onsets):
            r = sc.judge(s, on)
            rows = np.asarray(r["fa_rows"], dtype=np.int64) - s.off
            day = np.minimum(rows // per_day, len(days))
            for d in day:
                fa_by_day[d] += 1
            n = s.n - s.off
            for d in range(len(days)):
                events_by_day[d] += max(0, min(n, (d + 1) * per_day) - d * per_day)
            events_by_day[len(days)] += max(0, n - len(days) * per_day)
        rate = 1e4 * fa_by_day / np.maximum(events_by_day, 1)
        a = report[det]["all"]
        p = pages(args.out) if is_ad else None
        page_rate = f"{1e4 * p / a['events']:.2f}" if p is not None else "–"
        print(f"| {det} | {a['recall']:.3f} | {a['entity_view']['recall']:.3f} | "
              f"{a['fa_per_10k']:.2f} | " + " | ".join(f"{x:.2f}" for x in rate) + f" | {page_rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
