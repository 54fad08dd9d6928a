#!/usr/bin/env python3
"""A labelled synthetic ops corpus for judging anomaly detectors.

Writes ``OUT/<family>/<family>_<k>.csv`` (header ``timestamp,value``,
timestamps ``YYYY-MM-DD HH:MM:SS`` as NAB writes them), and beside them:

* ``labels.json``: per file, the injected anomalies: ``kind``, the first and
  last row of the anomaly (``start``, ``end``), the last row at which a
  detection still counts (``detect_by``) and its parameters;
* ``combined_windows.json``: the same windows (``start`` .. ``detect_by``) in
  NAB's format, so that NAB's scorer can read the corpus too.

Eleven families of series, the shapes an operations fleet reports:

============== ======== ====================================================
family         sampling what
============== ======== ====================================================
cpu_daily      1 min    utilisation %, business-hours daily cycle, AR(1) noise
users_weekly   5 min    active users: daily cycle, quiet weekends, noise
requests       1 min    request counts: Poisson with a daily cycle in the rate
latency        1 min    p99 latency (s): log-normal, 1 % slow outliers x2-4
errors         1 min    sparse error counts: Poisson 0.02-0.5/min, short bursts
memory         1 min    heap bytes: sawtooth, grows until a GC drops it
disk           5 min    disk used %: slow fill, a cleanup every 1-3 days
flat           1 min    a setting or replica count: flat, 0.1 % one-row jitter
queue          1 min    queue depth: near 0, bursts that build and drain
walk           1 min    a wandering gauge: mean-reverting random walk (AR 0.995)
mentions       5 min    mention counts: daily cycle, over-dispersed, stories
                        that multiply the rate for an hour or two
============== ======== ====================================================

and seven kinds of anomaly, each injected only where it makes sense for the
family (a dip needs room below, a stuck value needs a moving series, a
seasonality break needs a season):

* ``spike`` / ``dip``: one to three rows far above / below;
* ``level_shift``: the level moves and stays moved (to the end of the file);
* ``variance_burst``: the noise grows 4-8x for 30-200 rows;
* ``stuck``: the value repeats exactly for 60-400 rows (a frozen exporter);
* ``drift``: a ramp away from normal over 200-600 rows, then it stays;
* ``seasonality_break``: the daily cycle stops (flat at its mean) or shifts
  by half a day, for one day.

Sizes are set against each family's own normal variation (its noise, its
normal outliers or bursts), so an anomaly is larger than anything the clean
series does at that moment, but not absurdly so. A third of the series of
every family are anomaly-free; the others carry one to three anomalies,
placed after the first quarter of the file and at least 600 rows apart.

Every file draws from its own generator seeded by ``(seed, family, k)``, so
the corpus is the same on every machine and Python version (string seeds are
hashed with SHA-512 by ``random``). Standard library only.

    python3 tests/bench/quality/gen_corpus.py --out DIR [--seed 1] [--per-family 6] [--rows 6000]
"""

import argparse
import datetime
import json
import math
import os
import random

START = datetime.datetime(2026, 1, 5)  # a Monday, 00:00 UTC

# How many rows after the last anomalous row a detection still counts, and
# how many rows after the onset a level shift or drift may take to be seen.
SPIKE_TOLERANCE = 5
SHIFT_WINDOW = 30
MIN_GAP = 600


def poisson(rng, lam):
    """A Poisson draw: inversion for small rates, a rounded normal above."""
    if lam <= 0:
        return 0
    if lam > 60:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def business_day(hour):
    """0 at night, 1 at mid-day: a smooth business-hours bump."""
    return max(0.0, math.sin(math.pi * (hour - 6.0) / 14.0)) ** 1.5 if 6 <= hour <= 20 else 0.0


class Family:
    """A family of series. Subclasses set the sampling and the shape.

    A series is made in two steps: ``drivers`` gives per-row arrays that the
    anomalies edit (``base``: the level without its season; ``season``: the
    seasonal part; ``noise``: the noise scale), then ``sample`` turns the
    drivers into values, row by row, with the family's own noise and state.
    """

    step_s = 60
    kinds = ()

    def __init__(self, rng, n):
        self.rng = rng
        self.n = n

    def hour(self, i):
        return ((i * self.step_s) / 3600.0) % 24.0

    def weekday(self, i):
        return int((i * self.step_s) // 86400) % 7

    def rows_per_day(self):
        return 86400 // self.step_s

    def quantum(self, v):
        return v


class CpuDaily(Family):
    name = "cpu_daily"
    kinds = ("spike", "dip", "level_shift", "variance_burst", "stuck", "drift", "seasonality_break")

    def drivers(self):
        r = self.rng
        self.lo, self.amp, self.sd = r.uniform(8, 30), r.uniform(15, 45), r.uniform(1.0, 3.0)
        base = [self.lo] * self.n
        season = [self.amp * business_day(self.hour(i)) for i in range(self.n)]
        return base, season, [self.sd] * self.n

    def sample(self, base, season, noise):
        r, e, out = self.rng, 0.0, []
        for b, s, sd in zip(base, season, noise):
            e = 0.5 * e + r.gauss(0, sd * math.sqrt(0.75))
            out.append(round(min(100.0, max(0.0, b + s + e)), 1))
        return out

    def unit(self):
        return self.sd


class UsersWeekly(Family):
    name = "users_weekly"
    step_s = 300
    kinds = ("spike", "dip", "level_shift", "variance_burst", "stuck", "drift", "seasonality_break")

    def drivers(self):
        r = self.rng
        self.peak = r.uniform(200, 5000)
        self.sd = self.peak * r.uniform(0.01, 0.03)
        season = []
        for i in range(self.n):
            day = business_day(self.hour(i)) * (0.35 if self.weekday(i) >= 5 else 1.0)
            season.append(self.peak * 0.8 * day)
        return [self.peak * 0.1] * self.n, season, [self.sd] * self.n

    def sample(self, base, season, noise):
        r = self.rng
        return [max(0, round(b + s + r.gauss(0, sd))) for b, s, sd in zip(base, season, noise)]

    def unit(self):
        return self.sd


class Requests(Family):
    name = "requests"
    kinds = ("spike", "dip", "level_shift", "variance_burst", "stuck", "drift", "seasonality_break")

    def drivers(self):
        r = self.rng
        self.lam = r.uniform(20, 400)
        season = [self.lam * 0.8 * business_day(self.hour(i)) for i in range(self.n)]
        return [self.lam * 0.4] * self.n, season, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out = self.rng, []
        for b, s, f in zip(base, season, noise):
            lam = max(0.0, b + s)
            if f > 1.0:  # over-dispersion: the rate itself jitters
                lam *= math.exp(r.gauss(0, 0.15 * f) - 0.5 * (0.15 * f) ** 2)
            out.append(poisson(r, lam))
        return out

    def unit(self):
        return math.sqrt(self.lam)


class Latency(Family):
    name = "latency"
    kinds = ("spike", "level_shift", "variance_burst", "stuck", "drift")

    def drivers(self):
        r = self.rng
        self.base = r.uniform(0.05, 0.4)
        season = [self.base * 0.3 * business_day(self.hour(i)) for i in range(self.n)]
        return [self.base] * self.n, season, [0.2] * self.n

    def sample(self, base, season, noise):
        r, out = self.rng, []
        for b, s, sd in zip(base, season, noise):
            v = (b + s) * math.exp(r.gauss(0, sd))
            if r.random() < 0.01:
                v *= r.uniform(2.0, 4.0)
            out.append(round(v, 3))
        return out

    def unit(self):
        # Normal slow outliers reach 4x the level: anomalies are sized
        # against that.
        return self.base


class Errors(Family):
    name = "errors"
    kinds = ("spike", "level_shift", "drift", "variance_burst")

    def drivers(self):
        r = self.rng
        self.lam = r.uniform(0.02, 0.5)
        return [self.lam] * self.n, [0.0] * self.n, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out, burst = self.rng, [], 0
        for b, s, f in zip(base, season, noise):
            if burst == 0 and r.random() < 0.002:
                burst = r.randint(2, 6)  # an ordinary short burst of retries
            lam = max(0.0, b + s) * f * (4.0 if burst else 1.0)
            burst = max(0, burst - 1)
            out.append(poisson(r, lam))
        return out

    def unit(self):
        return max(1.0, 4 * self.lam + 2 * math.sqrt(4 * self.lam))


class Memory(Family):
    name = "memory"
    kinds = ("spike", "dip", "stuck", "drift", "level_shift")

    def drivers(self):
        r = self.rng
        self.floor = r.uniform(200e6, 2e9)
        self.period = r.randint(30, 200)
        self.rise = self.floor * r.uniform(0.2, 0.6)
        return [self.floor] * self.n, [0.0] * self.n, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out, t, period = self.rng, [], 0, self.period
        for b, s, f in zip(base, season, noise):
            if t >= period:
                t, period = 0, max(10, round(self.period * r.uniform(0.8, 1.2)))
            v = b + s + self.rise * t / period + r.gauss(0, self.rise * 0.01 * f)
            out.append(round(v / 1e6) * 1e6)
            t += 1
        return out

    def unit(self):
        return self.rise


class Disk(Family):
    name = "disk"
    step_s = 300
    kinds = ("spike", "stuck", "drift", "level_shift")

    def drivers(self):
        r = self.rng
        self.start = r.uniform(20, 50)
        self.fill = r.uniform(0.005, 0.03)  # % per row
        return [self.start] * self.n, [0.0] * self.n, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out, used = self.rng, [], 0.0
        next_cleanup = r.randint(self.rows_per_day(), 3 * self.rows_per_day())
        for i, (b, s, f) in enumerate(zip(base, season, noise)):
            if i == next_cleanup:
                used *= r.uniform(0.3, 0.6)
                next_cleanup = i + r.randint(self.rows_per_day(), 3 * self.rows_per_day())
            used += max(0.0, r.gauss(self.fill * f, self.fill))
            out.append(round(min(100.0, b + s + used), 2))
        return out

    def unit(self):
        return 2.0  # percent points


class Flat(Family):
    name = "flat"
    kinds = ("spike", "dip", "level_shift")

    def drivers(self):
        r = self.rng
        self.level = r.choice([1.0, 3.0, 8.0, 100.0, 512.0])
        self.q = 1.0 if self.level > 1 else 0.01
        return [self.level] * self.n, [0.0] * self.n, [1.0] * self.n

    def sample(self, base, season, noise):
        r = self.rng
        return [b + s + (r.choice((-1, 1)) * self.q if r.random() < 0.001 * f else 0.0)
                for b, s, f in zip(base, season, noise)]

    def unit(self):
        return max(self.q, 0.1 * self.level)


class Queue(Family):
    name = "queue"
    kinds = ("spike", "level_shift", "stuck", "drift")

    def drivers(self):
        r = self.rng
        self.burst = r.uniform(20, 100)
        return [1.0] * self.n, [0.0] * self.n, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out, depth = self.rng, [], 0.0
        for b, s, f in zip(base, season, noise):
            if r.random() < 0.01:
                depth += self.burst * r.uniform(0.3, 1.0)
            depth *= r.uniform(0.7, 0.9)
            out.append(max(0, round(b + s + depth + r.uniform(0, 3) * f)))
        return out

    def unit(self):
        return self.burst


class Walk(Family):
    name = "walk"
    kinds = ("spike", "dip", "level_shift", "variance_burst", "stuck")

    def drivers(self):
        r = self.rng
        self.mean, self.sd = r.uniform(50, 500), r.uniform(0.5, 5.0)
        return [self.mean] * self.n, [0.0] * self.n, [self.sd] * self.n

    def sample(self, base, season, noise):
        r, out, dev = self.rng, [], 0.0
        for b, s, sd in zip(base, season, noise):
            dev = 0.995 * dev + r.gauss(0, sd)
            out.append(round(b + s + dev, 2))
        return out

    def unit(self):
        return self.sd


class Mentions(Family):
    name = "mentions"
    step_s = 300
    kinds = ("spike", "level_shift", "variance_burst", "drift", "seasonality_break")

    def drivers(self):
        r = self.rng
        self.lam = r.uniform(5, 80)
        season = [self.lam * 0.7 * business_day(self.hour(i)) for i in range(self.n)]
        return [self.lam * 0.5] * self.n, season, [1.0] * self.n

    def sample(self, base, season, noise):
        r, out, buzz = self.rng, [], 1.0
        for b, s, f in zip(base, season, noise):
            if r.random() < 0.004:
                buzz += r.uniform(1.0, 4.0)  # a story goes round: ordinary
            buzz = 1.0 + (buzz - 1.0) * 0.93
            lam = max(0.0, b + s) * buzz
            # Negative binomial counts: a Poisson whose rate is gamma-noisy.
            lam *= r.gammavariate(1.0 / (0.15 * f) ** 2, (0.15 * f) ** 2)
            out.append(poisson(r, lam))
        return out

    def unit(self):
        # Ordinary stories multiply the rate by up to 5.
        return 4.0 * self.lam


FAMILIES = (CpuDaily, UsersWeekly, Requests, Latency, Errors, Memory, Disk, Flat, Queue, Walk, Mentions)


def inject(fam, rng, kind, at, base, season, noise):
    """Edits the drivers for an anomaly of `kind` starting at row `at`;
    returns (last anomalous row, detect_by row, parameters, post-edit)."""
    n, u = fam.n, fam.unit()
    up = rng.random() < 0.5
    if kind in ("spike", "dip"):
        width = rng.choice((1, 1, 1, 2, 3))
        sign = 1 if kind == "spike" else -1
        size = u * rng.uniform(6, 12)
        if fam.name in ("queue", "memory", "errors", "mentions"):
            # Their unit is already their largest normal swing.
            size = u * rng.uniform(2.5, 5)
        if fam.name == "latency":
            # Normal slow outliers reach 3 levels above the level.
            size = u * rng.uniform(6, 12)
        if kind == "dip":
            # Never below zero: a dip takes away up to 80 % of the level.
            level = base[at] + season[at]
            size = min(size, 0.8 * level)
        for i in range(at, at + width):
            base[i] += sign * size
        end = at + width - 1
        return end, end + SPIKE_TOLERANCE, {"size": round(sign * size, 6), "rows": width}, None
    if kind == "level_shift":
        size = u * rng.uniform(5, 10)
        if fam.name in ("latency", "queue", "memory", "errors", "mentions"):
            size = u * rng.uniform(1.5, 3)
        level = base[at] + season[at]
        if not up and size < 0.8 * level:
            size = -size
        for i in range(at, n):
            base[i] += size
        return at, at + SHIFT_WINDOW, {"size": round(size, 6)}, None
    if kind == "variance_burst":
        rows = rng.randint(30, 200)
        factor = rng.uniform(4, 8)
        for i in range(at, min(n, at + rows)):
            noise[i] *= factor
        end = min(n - 1, at + rows - 1)
        return end, end + SPIKE_TOLERANCE, {"factor": round(factor, 3), "rows": rows}, None
    if kind == "stuck":
        rows = rng.randint(60, 400)
        end = min(n - 1, at + rows - 1)
        return end, end, {"rows": rows}, ("stuck", at, end)
    if kind == "drift":
        rows = rng.randint(200, 600)
        size = u * rng.uniform(6, 12)
        if fam.name in ("latency", "queue", "memory", "errors", "disk", "mentions"):
            size = u * rng.uniform(1.5, 3)
        level = base[at] + season[at]
        if not up and size < 0.8 * level and fam.name not in ("disk", "memory", "errors", "queue"):
            size = -size
        for i in range(at, n):
            base[i] += size * min(1.0, (i - at + 1) / rows)
        end = min(n - 1, at + rows - 1)
        return end, end + SHIFT_WINDOW, {"size": round(size, 6), "rows": rows}, None
    if kind == "seasonality_break":
        rows = fam.rows_per_day()
        end = min(n - 1, at + rows - 1)
        span = season[at:end + 1]
        if rng.random() < 0.5:
            mean = sum(span) / len(span)
            for i in range(at, end + 1):
                season[i] = mean
            how = "flat"
        else:
            half = rows // 2
            shifted = [season[i - half] for i in range(at, end + 1)]
            season[at:end + 1] = shifted
            how = "half_day_shift"
        return end, end, {"rows": rows, "how": how}, None
    raise ValueError(kind)


def make_series(seed, family, k, n, rotation):
    """One file: its timestamps, values and anomalies. `rotation` counts the
    anomalies of the family so far, so that its kinds take turns."""
    rng = random.Random(f"{seed}:{family.name}:{k}")
    fam = family(rng, n)
    base, season, noise = fam.drivers()
    anomalies, posts = [], []
    # Every third file stays clean.
    if k % 3 != 0:
        count = rng.randint(1, 3)
        starts = []
        for _ in range(50):
            if len(starts) == count:
                break
            at = rng.randint(n // 4, n - 400)
            if all(abs(at - s) >= MIN_GAP for s in starts):
                starts.append(at)
        starts.sort()
        for j, at in enumerate(starts):
            kind = fam.kinds[(rotation + j) % len(fam.kinds)]
            end, detect_by, params, post = inject(fam, rng, kind, at, base, season, noise)
            anomalies.append({"kind": kind, "start": at, "end": end,
                              "detect_by": min(n - 1, detect_by), "params": params})
            if post:
                posts.append(post)
    values = fam.sample(base, season, noise)
    for what, a, b in posts:
        if what == "stuck":
            for i in range(a, b + 1):
                values[i] = values[a - 1]
    stamps = [(START + datetime.timedelta(seconds=i * fam.step_s)).strftime("%Y-%m-%d %H:%M:%S")
              for i in range(n)]
    return stamps, values, anomalies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--per-family", type=int, default=6)
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--families", default=",".join(f.name for f in FAMILIES))
    args = ap.parse_args()
    wanted = set(args.families.split(","))
    labels, windows = {}, {}
    for family in FAMILIES:
        if family.name not in wanted:
            continue
        os.makedirs(os.path.join(args.out, family.name), exist_ok=True)
        # The family's kinds take turns, from a seeded starting point.
        rotation = random.Random(f"{args.seed}:{family.name}").randrange(len(family.kinds))
        for k in range(args.per_family):
            stamps, values, anomalies = make_series(args.seed, family, k, args.rows, rotation)
            rotation += len(anomalies)
            rel = f"{family.name}/{family.name}_{k}.csv"
            with open(os.path.join(args.out, rel), "w") as f:
                f.write("timestamp,value\n")
                for t, v in zip(stamps, values):
                    f.write(f"{t},{v}\n")
            labels[rel] = anomalies
            windows[rel] = [[stamps[a["start"]] + ".000000", stamps[a["detect_by"]] + ".000000"]
                            for a in anomalies]
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump({"seed": args.seed, "rows": args.rows, "files": labels}, f, indent=1, sort_keys=True)
    with open(os.path.join(args.out, "combined_windows.json"), "w") as f:
        json.dump(windows, f, indent=1, sort_keys=True)
    total = sum(len(v) for v in labels.values())
    print(f"gen_corpus: {len(labels)} files, {total} anomalies, seed {args.seed} -> {args.out}")


if __name__ == "__main__":
    main()
