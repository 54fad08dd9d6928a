#!/usr/bin/env python3
"""Self-test of the quality-benchmark peers (opt-in, not part of cargo test).

Run: ``python3 tests/bench/quality/peers/test_peers.py`` (``-k wgauss`` etc.
to pick). The end-to-end tests go through ``run.sh``, so the first run
installs River into target/peers/venv and builds the forest in
target/quality-peers/rcf; the rest tests ``peers.py`` directly.
"""

import contextlib
import itertools
import csv
import io
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers  # noqa: E402 (after the path is set)

SPIKE_ROW = 450
ROWS = 600
PREFIX_ROWS = 300
# Rows before this are warm-up: the forest scores only from row 80, and
# every peer's statistics are still settling before that.
WARM_UP = 100


def spike_values():
    """A noisy daily-like sine with one obvious spike at SPIKE_ROW."""
    rng = random.Random(7)
    values = [10 + 2 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 0.2) for i in range(ROWS)]
    values[SPIKE_ROW] += 15
    return values


def write_csv(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["timestamp", "value"])
        out.writerows(rows)


def nab_timestamps(n):
    return [f"2024-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00" for i in range(n)]


def read_results(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [r[0] for r in rows[1:]], [float(r[1]) for r in rows[1:]]


class EndToEnd:
    """Runs one peer through run.sh on a spike file and a prefix of it."""

    PEER = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        data = os.path.join(cls.tmp.name, "data")
        cls.values = spike_values()
        cls.timestamps = nab_timestamps(ROWS)
        rows = list(zip(cls.timestamps, cls.values, strict=True))
        write_csv(os.path.join(data, "synthetic", "spike.csv"), rows)
        write_csv(os.path.join(data, "synthetic", "prefix.csv"), rows[:PREFIX_ROWS])
        cls.outs = []
        for run in ("a", "b"):
            out = os.path.join(cls.tmp.name, run)
            done = subprocess.run(
                [os.path.join(HERE, "run.sh"), cls.PEER, data, out],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise AssertionError(f"run.sh {cls.PEER} failed:\n{done.stderr}")
            cls.summary = done.stdout
            cls.outs.append(out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def results(self, name, run=0):
        return read_results(os.path.join(self.outs[run], "synthetic", name))

    def test_one_row_per_data_row_with_its_timestamp(self):
        header, timestamps, scores = self.results("spike.csv")
        self.assertEqual(header, ["timestamp", "anomaly_score"])
        self.assertEqual(timestamps, self.timestamps)
        self.assertEqual(len(scores), ROWS)

    def test_scores_are_in_unit_interval(self):
        _, _, scores = self.results("spike.csv")
        self.assertTrue(all(0.0 <= s <= 1.0 for s in scores), (min(scores), max(scores)))
        self.assertEqual(scores[0], 0.0)

    def test_spike_scores_above_every_other_row_after_warm_up(self):
        _, _, scores = self.results("spike.csv")
        others = scores[WARM_UP:SPIKE_ROW] + scores[SPIKE_ROW + 1 :]
        self.assertGreater(scores[SPIKE_ROW], max(others))

    def test_no_look_ahead(self):
        # A prefix of the stream scores exactly as the start of the whole one.
        _, _, whole = self.results("spike.csv")
        _, _, prefix = self.results("prefix.csv")
        self.assertEqual(prefix, whole[:PREFIX_ROWS])

    def test_deterministic(self):
        self.assertEqual(self.results("spike.csv", 0), self.results("spike.csv", 1))

    def test_summary_line(self):
        self.assertRegex(
            self.summary,
            rf"^peer={self.PEER} files=2 rows={ROWS + PREFIX_ROWS} bad_values=0"
            r" seconds=\d+\.\d cpu_seconds=\d+\.\d\n$",
        )


class WgaussEndToEnd(EndToEnd, unittest.TestCase):
    PEER = "wgauss"


class RiverEndToEnd(EndToEnd, unittest.TestCase):
    PEER = "river"


class RcfEndToEnd(EndToEnd, unittest.TestCase):
    PEER = "rcf"

    def test_forest_options_reach_the_forest(self):
        # The forest scores once it holds 65 shingles: from row 80 with
        # shingle 8 (its first 7 rows fill the shingle), from row 66 with 1.
        data = os.path.join(self.tmp.name, "data")
        out = os.path.join(self.tmp.name, "shingle1")
        subprocess.run(
            [os.path.join(HERE, "run.sh"), "rcf", data, out, "--", "--shingle-size", "1"],
            capture_output=True,
            check=True,
        )
        first_scored = [
            next(i for i, s in enumerate(scores) if s > 0)
            for scores in (
                self.results("spike.csv")[2],
                read_results(os.path.join(out, "synthetic", "spike.csv"))[2],
            )
        ]
        self.assertEqual(first_scored, [80, 66])

    def test_bad_forest_option_is_a_clear_error(self):
        data = os.path.join(self.tmp.name, "data")
        done = subprocess.run(
            [
                os.path.join(HERE, "run.sh"),
                "rcf",
                data,
                os.path.join(self.tmp.name, "bad"),
                "--",
                "--trees",
                "0",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(done.returncode, 1)
        self.assertIn("number of trees cannot be 0", done.stderr)


class WindowedGaussianTest(unittest.TestCase):
    def test_matches_a_window_rebuilt_from_the_description(self):
        window, step = 10, 3
        rng = random.Random(3)
        values = [rng.uniform(-5, 5) for _ in range(60)]
        got = peers.WindowedGaussian(window=window, step=step).score_stream(values)
        for n, x in enumerate(values):
            # The window when value n arrives: value by value up to `window`,
            # then it has moved only by whole steps.
            if n <= window:
                seen = values[:n]
            else:
                seen = values[: window + (n - window) // step * step][-window:]
            if not seen:
                want = 0.0
            else:
                std = max(statistics.pstdev(seen), 1e-6)
                want = 1 - math.erfc(abs(x - statistics.fmean(seen)) / std / math.sqrt(2))
            self.assertAlmostEqual(got[n], want, places=9, msg=f"value {n}")

    def test_constant_stream_uses_the_std_floor(self):
        scores = peers.WindowedGaussian().score_stream([5.0] * 20 + [5.000001, 6.0])
        self.assertEqual(scores[:20], [0.0] * 20)
        # 1e-6 away is one floored deviation: erf(1/sqrt(2)) ~ 0.683.
        self.assertAlmostEqual(scores[20], math.erf(1 / math.sqrt(2)), places=3)
        self.assertEqual(scores[21], 1.0)


class ScoreMapTest(unittest.TestCase):
    def test_ratio_map_is_monotone_into_unit_interval(self):
        raws = [-4.0, 0.0, 0.5, 1.0, 3.0, 10.0, 1e6, 1e300]
        mapped = [peers.ratio_map(r) for r in raws]
        self.assertEqual(mapped[:2], [0.0, 0.0])
        self.assertEqual(mapped[4], 0.5)
        self.assertTrue(all(a < b for a, b in itertools.pairwise(mapped[1:])), mapped)
        self.assertTrue(all(0.0 <= m < 1.0 for m in mapped), mapped)


class InputTest(unittest.TestCase):
    def test_accepted_timestamps(self):
        for ts in [
            "2014-04-01 00:05:00",
            "2014-04-01 00:05:00.123456",
            "2024-02-29T23:59:59Z",
            "2024-02-29t23:59:59.123456789+05:30",
            "2024-02-29 23:59:59-01:00",
            "1700000000",
            "1700000000.25",
        ]:
            peers.check_timestamp(ts)

    def test_rejected_timestamps(self):
        for ts in [
            "",
            "yesterday",
            "2014-04-01",
            "2014-13-01 00:00:00",
            "2023-02-29T00:00:00Z",
            "2014-04-01T00:05:00",
            "-5",
            "1e9",
        ]:
            with self.assertRaises(ValueError, msg=ts):
                peers.check_timestamp(ts)

    def run_main(self, files):
        """Runs peers.py wgauss on files {relpath: text}; (exit code, out dir, stdout, stderr)."""
        tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp], check=True))
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, "data", rel)), exist_ok=True)
            with open(os.path.join(tmp, "data", rel), "w") as f:
                f.write(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = peers.main(["wgauss", os.path.join(tmp, "data"), os.path.join(tmp, "out")])
        return code, os.path.join(tmp, "out"), out.getvalue(), err.getvalue()

    def test_bad_values_score_zero_and_are_not_learned(self):
        text = "timestamp,value\n1,1.0\n2,\n3,nan\n4,2.0\n5,abc\n6,inf\n7,3.0\n"
        code, out, stdout, stderr = self.run_main({"c/f.csv": text})
        self.assertEqual(code, 0, stderr)
        self.assertIn("bad_values=4", stdout)
        self.assertIn("c/f.csv: 4 rows without a finite value", stderr)
        _, timestamps, scores = read_results(os.path.join(out, "c", "f.csv"))
        self.assertEqual(timestamps, [str(i) for i in range(1, 8)])
        # The good values 1, 2, 3 are one stream; the bad rows are 0.
        want = peers.WindowedGaussian().score_stream([1.0, 2.0, 3.0])
        self.assertEqual(scores, [want[0], 0.0, 0.0, want[1], 0.0, 0.0, want[2]])

    def test_mixed_formats_and_column_order(self):
        text = "value,timestamp\n1.5,2024-01-01T00:00:00Z\n2.5,1704067260\n"
        code, out, _, stderr = self.run_main({"c/f.csv": text})
        self.assertEqual(code, 0, stderr)
        _, timestamps, scores = read_results(os.path.join(out, "c", "f.csv"))
        self.assertEqual(timestamps, ["2024-01-01T00:00:00Z", "1704067260"])
        self.assertEqual(len(scores), 2)

    def test_bad_timestamp_stops_with_file_and_line_and_writes_nothing(self):
        text = "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 25:00:00,2\n"
        code, out, _, stderr = self.run_main({"c/f.csv": text})
        self.assertEqual(code, 1)
        self.assertRegex(stderr, r"c/f\.csv:3: timestamp '2014-04-01 25:00:00'")
        self.assertFalse(os.path.exists(os.path.join(out, "c", "f.csv")))

    def test_wrong_field_count_and_header_are_errors(self):
        code, _, _, stderr = self.run_main({"c/f.csv": "timestamp,value\n1,2,3\n"})
        self.assertEqual(code, 1)
        self.assertIn("f.csv:2: 3 fields, the header has 2", stderr)
        code, _, _, stderr = self.run_main({"c/f.csv": "time,val\n1,2\n"})
        self.assertEqual(code, 1)
        self.assertIn("needs columns timestamp and value", stderr)


if __name__ == "__main__":
    unittest.main()
