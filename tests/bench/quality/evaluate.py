#!/usr/bin/env python3
"""Scores detectors on the synthetic ops corpus and on NAB, honestly.

Every detector has written one CSV per data file (same relative path) with
one row per data row and an ``anomaly_score`` column; anomalyd's backtest
also writes its ``alert`` column (1 while its default alert rule fires).

``corpus`` mode (labels from ``gen_corpus.py``'s ``labels.json``):

* an *alert* starts where the detector starts firing. anomalyd's alerts are
  its own (the ``alert`` column, default configuration and threshold, fixed
  before the corpus was drawn). A peer fires when its score reaches a
  threshold ``T`` and resolves after 3 rows below it, as anomalyd's default
  rule does; ``T`` is chosen by leave-one-family-out: for each family, the
  most sensitive ``T`` that keeps false alarms at or below 2 per 10,000
  events on the *other* families (the pager budget), then applied to the
  held-out family;
* an anomaly is *detected* when an alert starts between its first row and
  its ``detect_by`` row; the delay is the rows from its first row to that
  alert;
* every alert that starts outside all anomaly windows is a *false alarm*,
  counted per 10,000 events over whole files, warm-up included.

``nab`` mode (NAB's own scoring, via ``nabscore.py``): the standard profile,
leave one category out: the threshold is chosen on the other categories
(NAB's sweep) and the held-out category is scored at it; plus, for
detectors that have one, the score at their fixed default threshold. The
threshold is never chosen on the files it is scored on.

    evaluate.py corpus --data DIR --det NAME=OUT [--det ...] [--json FILE]
    evaluate.py nab --data NAB_DIR --nabscore nabscore.py --det NAME=OUT[@T] [...]
"""

import argparse
import bisect
import csv
import datetime
import importlib.util
import json
import os
import statistics
import sys

PAGER_FA_PER_10K = 2.0
RESOLVE_AFTER = 3


def read_rows(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        scores, alerts = [], []
        has_alert = "alert" in (r.fieldnames or [])
        for row in r:
            try:
                s = float(row["anomaly_score"])
            except (TypeError, ValueError):
                s = 0.0
            scores.append(s if s == s else 0.0)
            if has_alert:
                alerts.append(row["alert"] == "1")
        return scores, (alerts if has_alert else None)


def starts_from_alerts(alerts):
    return [i for i, a in enumerate(alerts) if a and (i == 0 or not alerts[i - 1])]


def starts_from_hits(hits):
    """Alert starts for hits (sorted rows): an alert resolves after
    RESOLVE_AFTER rows without a hit, so a hit starts a new alert when more
    than that many rows passed since the previous one."""
    out, last = [], None
    for i in hits:
        if last is None or i - last - 1 >= RESOLVE_AFTER:
            out.append(i)
        last = i
    return out


class File:
    def __init__(self, rel, anomalies, scores, alerts):
        self.rel = rel
        self.family = rel.split("/")[0]
        self.anomalies = anomalies
        self.rows = len(scores)
        self.alerts = alerts
        self.scores = scores
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        self.by_score = order
        self.neg_sorted = [-scores[i] for i in order]

    def starts_at(self, threshold):
        k = bisect.bisect_right(self.neg_sorted, -threshold)
        return starts_from_hits(sorted(self.by_score[:k]))

    def judge(self, starts):
        """(detections: list of (kind, delay or None), false alarms)."""
        det = []
        used = set()
        for a in self.anomalies:
            hit = [s for s in starts if a["start"] <= s <= a["detect_by"]]
            used.update(hit)
            det.append((a["kind"], (hit[0] - a["start"]) if hit else None))
        fa = [s for s in starts if s not in used]
        return det, fa


def rows_per_day(path):
    """Rows per day of a data file, from its first two timestamps."""
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        t0, t1 = next(r)[0], next(r)[0]
    step = (datetime.datetime.fromisoformat(t1) - datetime.datetime.fromisoformat(t0)).total_seconds()
    return max(1, round(86400 / step))


def load_corpus(data, out):
    labels = json.load(open(os.path.join(data, "labels.json")))["files"]
    files = []
    for rel in sorted(labels):
        scores, alerts = read_rows(os.path.join(out, rel))
        f = File(rel, labels[rel], scores, alerts)
        f.per_day = rows_per_day(os.path.join(data, rel))
        files.append(f)
    return files


def summarise(judged, rows):
    """judged: list of (detections, false alarms) over files with `rows` events."""
    kinds = {}
    fa = 0
    for det, f in judged:
        fa += len(f)
        for kind, delay in det:
            kinds.setdefault(kind, []).append(delay)
    alld = [d for v in kinds.values() for d in v]
    found = [d for d in alld if d is not None]
    return {
        "anomalies": len(alld),
        "detected": len(found),
        "recall": len(found) / len(alld) if alld else None,
        "median_delay": statistics.median(found) if found else None,
        "false_alarms": fa,
        "events": rows,
        "fa_per_10k": 1e4 * fa / rows if rows else 0.0,
        "by_kind": {
            k: {
                "anomalies": len(v),
                "detected": sum(d is not None for d in v),
                "recall": sum(d is not None for d in v) / len(v),
                "median_delay": statistics.median([d for d in v if d is not None])
                if any(d is not None for d in v) else None,
            }
            for k, v in sorted(kinds.items())
        },
    }


def candidate_thresholds(files):
    pool = sorted({s for f in files for s in f.scores if s > 0}, reverse=True)
    total = sum(f.rows for f in files)
    # At most 5 % of all rows above the lowest candidate; ~300 candidates.
    pool = pool[: max(1, total // 20)]
    step = max(1, len(pool) // 300)
    return pool[::step]


def pick_threshold(files, thresholds):
    """The most sensitive threshold with false alarms within the pager
    budget on `files`; if none is, the one with the fewest."""
    rows = sum(f.rows for f in files)
    best = None
    for t in sorted(thresholds, reverse=True):
        s = summarise([f.judge(f.starts_at(t)) for f in files], rows)
        key = (s["fa_per_10k"] <= PAGER_FA_PER_10K, s["recall"] or 0.0, -s["fa_per_10k"])
        if best is None or key > best[0]:
            best = (key, t)
    return best[1]


def corpus(args):
    report = {}
    for spec in args.det:
        name, out = spec.split("=", 1)
        files = load_corpus(args.data, out)
        rows = sum(f.rows for f in files)
        if files[0].alerts is not None and not args.sweep_all:
            judged = [f.judge(starts_from_alerts(f.alerts)) for f in files]
            how = "own alert rule (default config)"
            thresholds = {}
        else:
            families = sorted({f.family for f in files})
            thresholds, judged = {}, []
            cands = candidate_thresholds(files)
            for fam in families:
                train = [f for f in files if f.family != fam]
                t = pick_threshold(train, cands)
                thresholds[fam] = t
                judged += [f.judge(f.starts_at(t)) for f in files if f.family == fam]
            how = "score >= T, T chosen leaving the family out"
        s = summarise(judged, rows)
        s["how"] = how
        s["thresholds"] = thresholds
        fams = {}
        for f, j in zip(files, judged):
            fams.setdefault(f.family, []).append((j, f.rows))
        s["by_family"] = {
            k: summarise([j for j, _ in v], sum(r for _, r in v)) for k, v in sorted(fams.items())
        }
        # Where false alarms fall: the first quarter of a file holds warm-up;
        # anomalyd's warm-up is the first day, so its second day is the
        # first after warm-up, compared with the days after it.
        early = sum(1 for f, (_, fa) in zip(files, judged) for x in fa if x < f.rows // 4)
        s["false_alarms_first_quarter"] = early
        for key, lo, hi in (("day2", 1, 2), ("day3_on", 2, None)):
            n = sum(1 for f, (_, fa) in zip(files, judged) for x in fa
                    if lo * f.per_day <= x < (hi * f.per_day if hi else f.rows))
            rows_in = sum(max(0, min(hi * f.per_day if hi else f.rows, f.rows) - lo * f.per_day)
                          for f in files)
            s[f"fa_per_10k_{key}"] = 1e4 * n / rows_in if rows_in else None
        report[name] = s
    print_corpus(report)
    if args.json:
        json.dump(report, open(args.json, "w"), indent=1)


def fmt(x, nd=2):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def print_corpus(report):
    kinds = sorted({k for s in report.values() for k in s["by_kind"]})
    print("| detector | recall | " + " | ".join(kinds) + " | false alarms / 10k events | in first quarter | median delay (rows) |")
    print("|---|---:|" + "---:|" * len(kinds) + "---:|---:|---:|")
    for name, s in report.items():
        cells = [fmt(s["by_kind"].get(k, {}).get("recall")) for k in kinds]
        print(f"| {name} | {fmt(s['recall'])} ({s['detected']}/{s['anomalies']}) | " + " | ".join(cells)
              + f" | {fmt(s['fa_per_10k'])} ({s['false_alarms']}) | {s['false_alarms_first_quarter']} | {fmt(s['median_delay'], 1)} |")
    print()
    print("False alarms per 10k events by age of the series (day 1 is anomalyd's warm-up):")
    print("| detector | day 2 (first after warm-up) | day 3 on |")
    print("|---|---:|---:|")
    for name, s in report.items():
        print(f"| {name} | {fmt(s['fa_per_10k_day2'])} | {fmt(s['fa_per_10k_day3_on'])} |")
    print()
    print("Median detection delay (rows) per kind:")
    print("| detector | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, s in report.items():
        print(f"| {name} | " + " | ".join(fmt(s["by_kind"].get(k, {}).get("median_delay"), 1) for k in kinds) + " |")
    print()
    fams = sorted({k for s in report.values() for k in s["by_family"]})
    print("Per family: recall / false alarms per 10k events:")
    print("| detector | " + " | ".join(fams) + " |")
    print("|---|" + "---:|" * len(fams))
    for name, s in report.items():
        print(f"| {name} | " + " | ".join(
            f"{fmt(s['by_family'][k]['recall'])} / {fmt(s['by_family'][k]['fa_per_10k'], 1)}"
            for k in fams) + " |")


def load_nabscore(path):
    spec = importlib.util.spec_from_file_location("nabscore", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def nab(args):
    ns = load_nabscore(args.nabscore)
    labels = json.load(open(os.path.join(args.data, "combined_windows.json")))
    rels = sorted(labels)
    cats = sorted({r.split("/")[0] for r in rels})
    w = ns.DEFAULT_PROFILES["standard"] if hasattr(ns, "DEFAULT_PROFILES") else None
    if w is None:
        w = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}
    ts_cache = {}
    report = {}
    for spec in args.det:
        name, rest = spec.split("=", 1)
        out, _, fixed = rest.partition("@")
        det_all = ns.load_detector(name, out, rels, labels, args.data, ts_cache)
        rows_at = {}
        loco = {}
        for c in cats:
            train = [r for r in rels if not r.startswith(c + "/")]
            test = [r for r in rels if r.startswith(c + "/")]
            dt = ns.load_detector(name, out, train, labels, args.data, ts_cache)
            curve = ns.Curve(dt)
            t = curve.thr[curve.best(w)]
            dh = ns.load_detector(name, out, test, labels, args.data, ts_cache)
            rows = ns.tally(dh, t, w)
            rows_at[c] = rows
            loco[c] = dict(ns.summarise(rows, w), threshold=t)
        everything = [r for c in cats for r in rows_at[c]]
        entry = {"loco": loco, "loco_total": ns.summarise(everything, w)}
        curve = ns.Curve(det_all)
        t = curve.thr[curve.best(w)]
        entry["swept_on_all"] = dict(ns.summarise(ns.tally(det_all, t, w), w), threshold=t)
        if fixed:
            rows = ns.tally(det_all, float(fixed), w)
            entry["fixed"] = dict(ns.summarise(rows, w), threshold=float(fixed))
            entry["fixed_by_category"] = {
                c: ns.summarise([r for r in rows if r["category"] == c], w) for c in cats}
        report[name] = entry
    print_nab(report, cats)
    if args.json:
        json.dump(report, open(args.json, "w"), indent=1, default=str)


def print_nab(report, cats):
    print("NAB standard profile. LOCO: threshold chosen on the other categories, "
          "held-out category scored at it (windows hit / false-positive rows):")
    print("| detector | " + " | ".join(cats) + " | LOCO total | fixed default threshold | swept on all files (optimistic) |")
    print("|---|" + "---:|" * (len(cats) + 3))
    for name, e in report.items():
        cells = []
        for c in cats:
            s = e["loco"][c]
            cells.append(f"{fmt(s['score'])} ({s['windows_detected']}/{s['windows']}, {s['fp_rows']} FP)")
        tot = e["loco_total"]
        fixed = e.get("fixed")
        fixed_s = f"{fmt(fixed['score'])} at {fixed['threshold']} ({fixed['fp_rows']} FP)" if fixed else "n/a"
        sw = e["swept_on_all"]
        print(f"| {name} | " + " | ".join(cells) + f" | **{fmt(tot['score'])}** | {fixed_s} | {fmt(sw['score'])} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--data", required=True)
    c.add_argument("--det", action="append", required=True)
    c.add_argument("--json")
    c.add_argument("--sweep-all", action="store_true",
                   help="judge every detector by its score with a held-out threshold, alert column or not")
    n = sub.add_parser("nab")
    n.add_argument("--data", required=True)
    n.add_argument("--nabscore", required=True)
    n.add_argument("--det", action="append", required=True)
    n.add_argument("--json")
    args = ap.parse_args()
    {"corpus": corpus, "nab": nab}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
