#!/usr/bin/env python3
"""Peers of anomalyd's detection-quality benchmark: per-row anomaly scores.

Usage: ``peers.py PEER DATA_DIR OUT_DIR [--rcf-bin PATH] [-- FOREST OPTIONS]``
(normally through ``run.sh``, which installs what a peer needs first; options
after ``--`` go to the forest program, peer rcf only).

For every ``DATA_DIR/<category>/<name>.csv`` (header ``timestamp,value``) it
writes ``OUT_DIR/<category>/<name>.csv`` with header
``timestamp,anomaly_score``, one row per data row in order, the timestamp
copied as read: the plain layout that ``nabscore.py`` reads. Each file is one
stream, processed in order, test-then-train (a value is scored before the
peer learns it), without labels, deterministically. Scores are in [0, 1].

Peers (settings and score maps in README.md beside this file):

* ``wgauss``: NAB's windowed Gaussian baseline, written from its description.
* ``river``:  River's LinearRegression with AdaGrad on the last 8 values,
  the absolute residual read as an EW z-score.
* ``rcf``:    AWS Random Cut Forest (crate krcflib), scored by the Rust
  program in ``rcf/`` on the values this script sends it.

The input is read and checked here, once for all peers, so that every peer
sees the same rows. A row whose value is missing or not a finite number gets
score 0 and is not learned (counted as ``bad_values``); a row with the wrong
number of fields or a timestamp in none of the accepted formats
(``YYYY-MM-DD HH:MM:SS``, RFC 3339, epoch seconds) stops the run with its
file and line, and no output is written for that file.

One summary line per run goes to stdout:
``peer=NAME files=N rows=N bad_values=N seconds=S cpu_seconds=C``: wall
time, and CPU time of this process and the forest processes (what a shared
machine's load does not inflate), from the first file read to the last
written.
"""

import argparse
import csv
import datetime
import math
import os
import re
import resource
import subprocess
import sys
import time
from collections import deque

# ---------------------------------------------------------------- input

_NAB_TS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?")
# RFC 3339 date-time; the RFC allows a space for the "T" and lower case.
_RFC3339_TS = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH_TS = re.compile(r"\d+(\.\d+)?")


class InputError(Exception):
    """A data file that cannot be read as ``timestamp,value`` rows."""


def check_timestamp(text):
    """Raises ValueError unless ``text`` is a timestamp in an accepted format.

    The peers do not use time, but a timestamp that is none of these means
    the file is not what the benchmark expects.
    """
    if _EPOCH_TS.fullmatch(text):
        return
    if _NAB_TS.fullmatch(text) or _RFC3339_TS.fullmatch(text):
        # fromisoformat checks the calendar (month 13, Feb 30 ...); it needs
        # "+00:00" for "Z" and "T" or " " as separator.
        iso = re.sub(r"[Zz]$", "+00:00", text).replace("t", "T")
        # Python takes at most 6 fraction digits: keep them, the rest is valid.
        iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)
        datetime.datetime.fromisoformat(iso)
        return
    raise ValueError("not YYYY-MM-DD HH:MM:SS, RFC 3339, or epoch seconds")


def parse_value(text):
    """The value as a float, or None if it is missing or not finite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_series(path):
    """Reads a data file: (timestamps as written, values with None for bad ones)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = [h.strip() for h in next(rows, [])]
        if "timestamp" not in header or "value" not in header:
            raise InputError(f"{path}:1: header {header} needs columns timestamp and value")
        t_col, v_col = header.index("timestamp"), header.index("value")
        timestamps, values = [], []
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise InputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
            ts = row[t_col].strip()
            try:
                check_timestamp(ts)
            except ValueError as e:
                raise InputError(f"{path}:{line}: timestamp {ts!r}: {e}") from None
            timestamps.append(ts)
            values.append(parse_value(row[v_col]))
    return timestamps, values


def data_files(data_dir):
    """Relative paths ``<category>/<name>.csv`` under data_dir, sorted."""
    found = []
    for category in sorted(os.listdir(data_dir)):
        cat_dir = os.path.join(data_dir, category)
        if os.path.isdir(cat_dir):
            found += [
                os.path.join(category, name)
                for name in sorted(os.listdir(cat_dir))
                if name.endswith(".csv")
            ]
    return found


def write_scores(path, timestamps, scores):
    """Writes the results file whole, or not at all (temp file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["timestamp", "anomaly_score"])
        # repr is the shortest text that reads back as the same float, so the
        # scorer sees exactly the order the peer computed.
        out.writerows((ts, repr(s)) for ts, s in zip(timestamps, scores, strict=True))
    os.replace(tmp, path)


# ---------------------------------------------------------------- score maps
# Each map is monotone, so the NAB scorer (which sweeps one threshold over
# all files) ranks rows as the raw scores do; each keeps the result in [0, 1).

# The raw value that maps to 0.5: 3 deviations for River's z-score, and a
# forest score of 3 for RCF (ordinary points score about 1).
HALF_AT = 3.0
# Past raw ~1e16 the ratio rounds to 1.0; the cap keeps such scores below 1.
_BELOW_ONE = math.nextafter(1.0, 0.0)


def ratio_map(raw):
    """max(raw, 0) / (max(raw, 0) + 3): 0 stays 0, 3 -> 0.5, never 1."""
    raw = max(raw, 0.0)
    return min(raw / (raw + HALF_AT), _BELOW_ONE)


# ---------------------------------------------------------------- peers


class WindowedGaussian:
    """NAB's windowed Gaussian baseline, from its description.

    A window of the last ``window`` values gives a mean and a (population)
    standard deviation. The window fills value by value (statistics updated
    each time); once full, new values wait in a step buffer and every
    ``step`` values the window drops its ``step`` oldest values, takes the
    buffer, and its statistics are recomputed. A value's score is the
    probability mass of the Gaussian within its distance from the mean:
    ``1 - P(|Z| >= |x - mean| / std) = erf(d / sqrt(2))``, 0 for the first
    value. It is already in [0, 1]; it reaches exactly 1.0 beyond about 8.3
    deviations, as NAB's own scores do, and is not remapped so that the
    baseline stays the published one.
    """

    def __init__(self, window=6400, step=100, std_floor=1e-6):
        self.window_size, self.step, self.std_floor = window, step, std_floor
        self.window = deque()
        self.buffer = []
        # Welford's running mean and sum of squared deviations while filling.
        self.mean = self.m2 = 0.0

    def score(self, x):
        if not self.window:
            return 0.0
        std = max(math.sqrt(self.m2 / len(self.window)), self.std_floor)
        return math.erf(abs(x - self.mean) / std / math.sqrt(2.0))

    def learn(self, x):
        if len(self.window) < self.window_size:
            self.window.append(x)
            delta = x - self.mean
            self.mean += delta / len(self.window)
            self.m2 += delta * (x - self.mean)
            return
        self.buffer.append(x)
        if len(self.buffer) == self.step:
            for _ in range(self.step):
                self.window.popleft()
            self.window.extend(self.buffer)
            self.buffer.clear()
            # Two passes over the new window: exact, and every 100 values only.
            self.mean = math.fsum(self.window) / len(self.window)
            self.m2 = math.fsum((v - self.mean) ** 2 for v in self.window)

    def score_stream(self, values):
        scores = []
        for x in values:
            scores.append(self.score(x))  # test-then-train
            self.learn(x)
        return scores


class RiverLags:
    """River's online linear regression with AdaGrad on the last 8 values.

    What a River user would write: ``TargetStandardScaler(StandardScaler() |
    LinearRegression(optimizer=AdaGrad(lr)))`` on features ``lag1`` (latest)
    to ``lag8``; the absolute residual ``|r|`` is compared with the EW mean
    and variance of the past absolute residuals (``river.stats``), ``z = (|r|
    - mean) / sd`` (0 while sd is 0), and the score is ``ratio_map(z)``.
    Rows before 8 lags exist score 0 and only fill the lags: the model and
    the residual statistics start with the first full feature vector.
    """

    LAGS = 8

    def __init__(self, lr=0.05, fading=0.05):
        from river import linear_model, optim, preprocessing, stats

        self.model = preprocessing.TargetStandardScaler(
            regressor=preprocessing.StandardScaler()
            | linear_model.LinearRegression(optimizer=optim.AdaGrad(lr=lr))
        )
        self.err_mean = stats.EWMean(fading_factor=fading)
        self.err_var = stats.EWVar(fading_factor=fading)
        self.lags = deque(maxlen=self.LAGS)
        self.names = [f"lag{k}" for k in range(1, self.LAGS + 1)]

    def score_stream(self, values):
        scores = []
        for x in values:
            if len(self.lags) < self.LAGS:
                scores.append(0.0)
                self.lags.append(x)
                continue
            features = dict(zip(self.names, reversed(self.lags), strict=True))
            # Test-then-train: predict and score before the model learns x.
            residual = abs(x - self.model.predict_one(features))
            # River's EWVar can come out a hair below 0 from rounding.
            sd = math.sqrt(max(self.err_var.get(), 0.0))
            z = (residual - self.err_mean.get()) / sd if sd > 0 else 0.0
            scores.append(ratio_map(z))
            self.model.learn_one(features, x)
            self.err_mean.update(residual)
            self.err_var.update(residual)
            self.lags.append(x)
        return scores


class RandomCutForest:
    """AWS Random Cut Forest: the Rust program in ``rcf/`` scores the stream.

    One process per file, so each file starts with a fresh forest and the
    same seed. Its raw scores (0 until the forest is ready) go through
    ``ratio_map``: s / (s + 3).
    """

    def __init__(self, binary, options=()):
        self.command = [binary, *options]

    def score_stream(self, values):
        text = "".join(f"{v!r}\n" for v in values)
        done = subprocess.run(self.command, input=text, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{self.command[0]} failed: {done.stderr.strip()}")
        raw = done.stdout.split()
        if len(raw) != len(values):
            raise RuntimeError(f"{self.command[0]} gave {len(raw)} scores for {len(values)} values")
        return [ratio_map(float(s)) for s in raw]


def make_peer(name, rcf_bin, forest_options):
    if name == "wgauss":
        return WindowedGaussian()
    if name == "river":
        return RiverLags()
    if name == "rcf":
        return RandomCutForest(rcf_bin, forest_options)
    raise ValueError(f"unknown peer {name!r}")


def score_file(peer, values):
    """Scores the good values as one stream; bad rows get 0 and are skipped."""
    good = [v for v in values if v is not None]
    scores = iter(peer.score_stream(good))
    return [0.0 if v is None else next(scores) for v in values]


def cpu_seconds():
    """User + system CPU seconds of this process and its finished children."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer", choices=["river", "rcf", "wgauss"])
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--rcf-bin", help="the built rcf-quality-peer (peer rcf only)")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, forest_options = ap.parse_args(argv[:split]), argv[split + 1 :]
    if args.peer == "rcf" and not args.rcf_bin:
        ap.error("peer rcf needs --rcf-bin (run.sh builds it)")
    if forest_options and args.peer != "rcf":
        ap.error("options after -- are for peer rcf only")
    files = data_files(args.data_dir)
    if not files:
        print(f"peers: no <category>/<name>.csv under {args.data_dir}", file=sys.stderr)
        return 2

    rows = bad = 0
    start, cpu_start = time.perf_counter(), cpu_seconds()
    try:
        for rel in files:
            timestamps, values = read_series(os.path.join(args.data_dir, rel))
            n_bad = values.count(None)
            if n_bad:
                print(f"peers: {rel}: {n_bad} rows without a finite value score 0", file=sys.stderr)
            # A fresh peer for every file: each file is its own stream.
            scores = score_file(make_peer(args.peer, args.rcf_bin, forest_options), values)
            write_scores(os.path.join(args.out_dir, rel), timestamps, scores)
            rows += len(values)
            bad += n_bad
    except (InputError, RuntimeError, OSError) as e:
        print(f"peers: {e}", file=sys.stderr)
        return 1
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    print(
        f"peer={args.peer} files={len(files)} rows={rows} bad_values={bad}"
        f" seconds={seconds:.1f} cpu_seconds={cpu:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
