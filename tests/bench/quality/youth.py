#!/usr/bin/env python3
"""How young series alert: the same days judged by a young and a mature
detector, on real servers' unlabelled history.

    youth.py --bin ANOMALYD --data ASD_DIR --out OUT [--every 4] [--days 8]

Each (server, metric) of ASD_DIR (train/ and test/, laid out as
shared/data/asd) is joined into one series (about 45 days). anomalyd
replays it once from its first event (the *mature* run) and again from
every `--every`-th day on (the *young* runs: a series first seen that day).
For each day since a young run's start, the table counts alert onsets per
10,000 events of the young runs beside the mature run's onsets on the very
same rows.

The data's own events (an incident, a deploy) fall on calendar days and
alert both runs alike, so the ratio young / mature is what youth adds:
1.0 means a series alerts on its second day as it would had it been
watched for weeks. No labels are used: an onset is an onset, which is why
this is a ratio and not a false-alarm rate.

Prints a Markdown table. Opt-in: never run by ``cargo test``.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime


def series_files(data):
    """(server/metric.csv, train path, test path) of every series."""
    out = []
    train = os.path.join(data, "train")
    for server in sorted(os.listdir(train)):
        for name in sorted(os.listdir(os.path.join(train, server))):
            if name.endswith(".csv"):
                test = os.path.join(data, "test", server, name)
                if os.path.exists(test):
                    out.append((f"{server}/{name}", os.path.join(train, server, name), test))
    return out


def read_rows(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        return [row for row in r if row]


def write_input(root, rel, rows):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)


def onsets(path, offset):
    """Rows (of the joined series) where an alert starts."""
    with open(path, newline="") as f:
        alerts = [row["alert"] == "1" for row in csv.DictReader(f)]
    return [i + offset for i, a in enumerate(alerts) if a and (i == 0 or not alerts[i - 1])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the anomalyd binary")
    ap.add_argument("--data", required=True, help="laid out as shared/data/asd (train/, test/)")
    ap.add_argument("--out", required=True, help="work directory (replaced)")
    ap.add_argument("--every", type=int, default=4, help="days between young runs' starts")
    ap.add_argument("--days", type=int, default=8, help="days since the start to tabulate")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    files = series_files(args.data)
    if not files:
        sys.exit(f"youth.py: no series under {args.data}/train with a test/ twin")
    joined = {rel: read_rows(tr) + read_rows(te) for rel, tr, te in files}
    # Rows per day from the first series' clock (5-minute points: 288).
    def ts(row):
        return datetime.fromisoformat(row[0])

    first = next(iter(joined.values()))
    step = (ts(first[1]) - ts(first[0])).total_seconds()
    per_day = int(round(86400 / step))
    length = min(len(rows) for rows in joined.values())
    starts = [0]
    k = args.every
    while (k + args.days) * per_day <= length:
        starts.append(k)
        k += args.every
    if len(starts) < 2:
        sys.exit("youth.py: the series are too short for one young run")

    shutil.rmtree(args.out, ignore_errors=True)

    def run(start):
        data = os.path.join(args.out, f"in-{start}")
        for rel, rows in joined.items():
            write_input(data, rel, rows[start * per_day :])
        out = os.path.join(args.out, f"out-{start}")
        done = subprocess.run(
            [args.bin, "backtest", "--input", data, "--output", out],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"youth.py: the backtest from day {start + 1} failed:\n{done.stderr}")
        return start, {rel: onsets(os.path.join(out, rel), start * per_day) for rel in joined}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = dict(pool.map(run, starts))
    mature = runs[0]
    young_starts = starts[1:]
    events = len(joined) * per_day * len(young_starts)
    print(
        f"Young runs start on days {', '.join(str(s + 1) for s in young_starts)} of "
        f"{len(joined)} series ({per_day} events a day); the mature run started on day 1."
    )
    print()
    print("| day since first event | young: onsets / 10k events | mature, same rows | young / mature |")
    print("|---:|---:|---:|---:|")
    for day in range(1, args.days + 1):
        y = m = 0
        for s in young_starts:
            lo, hi = (s + day - 1) * per_day, (s + day) * per_day
            for rel in joined:
                y += sum(lo <= i < hi for i in runs[s][rel])
                m += sum(lo <= i < hi for i in mature[rel])
        ratio = f"{y / m:.2f}" if m else "-"
        print(f"| {day} | {1e4 * y / events:.2f} | {1e4 * m / events:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
