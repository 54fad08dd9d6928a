#!/usr/bin/env python3
"""Cross-validated choice of anomalyd's defaults: each configuration
variant is run on the same files, and a variant is *chosen* on some of the
data and *scored* on the rest, never on the files it was chosen on.

* corpus (both seeds pooled): leave one family out. For each family, the
  variant with the highest recall among those within 2 false alarms per
  10k events (default alert rule) on the other ten families is chosen, and
  scored on the held-out family.
* NAB (when given): leave one category out. For each category, the variant
  with the best mean NAB standard score at the fixed default threshold 0.5
  on the other categories is chosen, and scored on the held-out one.

It prints every variant's own numbers (for reading, not for choosing),
then which variant each fold chose and the held-out totals, beside the
shipped default's.

    ablation.py --variants a,b,... --corpus DATA=OUT_ROOT [...] [--nab NAB_DIR --nabscore PY --nab-out OUT_ROOT]

OUT_ROOT/<variant> holds the backtest output of that variant.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

BUDGET = evaluate.PAGER_FA_PER_10K


def corpus_table(variants, corpora):
    """{variant: {family: (detected, anomalies, false_alarms, rows)}}"""
    out = {}
    for v in variants:
        fams = {}
        for data, root in corpora:
            for f in evaluate.load_corpus(data, os.path.join(root, v)):
                det, fa = f.judge(evaluate.starts_from_alerts(f.alerts))
                d, n, a, r = fams.get(f.family, (0, 0, 0, 0))
                fams[f.family] = (d + sum(x is not None for _, x in det), n + len(det), a + len(fa), r + f.rows)
        out[v] = fams
    return out


def total(fams, keep):
    d = n = a = r = 0
    for fam, (dd, nn, aa, rr) in fams.items():
        if keep(fam):
            d, n, a, r = d + dd, n + nn, a + aa, r + rr
    return d, n, a, r


def choose(scores):
    """scores: {variant: (within_budget, recall, -fa)} -> best variant."""
    return max(scores, key=lambda v: scores[v])


def corpus_cv(table, variants, default):
    fams = sorted(next(iter(table.values())))
    chosen, held = {}, [0, 0, 0, 0]
    for fam in fams:
        keyed = {}
        for v in variants:
            d, n, a, r = total(table[v], lambda f, fam=fam: f != fam)
            fa = 1e4 * a / r
            keyed[v] = (fa <= BUDGET, d / n if n else 0.0, -fa, v == default)
        v = choose(keyed)
        chosen[fam] = v
        d, n, a, r = table[v][fam]
        held = [held[0] + d, held[1] + n, held[2] + a, held[3] + r]
    return chosen, held


def nab_table(variants, nab_dir, scorer, root):
    """({variant: per-file rows at threshold 0.5}, categories, summarise)"""
    ns = evaluate.load_nabscore(scorer)
    labels = evaluate.json.load(open(os.path.join(nab_dir, "combined_windows.json")))
    rels = sorted(labels)
    cats = sorted({r.split("/")[0] for r in rels})
    w = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}
    ts_cache = {}
    out = {}
    for v in variants:
        det = ns.load_detector(v, os.path.join(root, v), rels, labels, nab_dir, ts_cache)
        out[v] = ns.tally(det, 0.5, w)
    return out, cats, lambda rows: ns.summarise(rows, w)["score"]


def nab_cv(rows, cats, score, variants, default):
    """Categories without windows have no score of their own; their false
    positives count in every other fold's choice."""
    scored = [c for c in cats if any(r["windows"] for r in rows[default] if r["category"] == c)]
    chosen, held = {}, {}
    for c in scored:
        keyed = {}
        for v in variants:
            keyed[v] = (score([r for r in rows[v] if r["category"] != c]), v == default)
        v = max(keyed, key=lambda x: keyed[x])
        chosen[c] = v
        held[c] = score([r for r in rows[v] if r["category"] == c])
    return chosen, held, scored


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", required=True)
    ap.add_argument("--default", default="default")
    ap.add_argument("--corpus", action="append", default=[])
    ap.add_argument("--nab")
    ap.add_argument("--nabscore")
    ap.add_argument("--nab-out")
    args = ap.parse_args()
    variants = args.variants.split(",")
    corpora = [c.split("=", 1) for c in args.corpus]

    nab = None
    if args.nab:
        nab = nab_table(variants, args.nab, args.nabscore, args.nab_out)

    print("Every variant on everything (for reading; the choice is below):")
    print("| variant | corpus recall | corpus false alarms / 10k | NAB standard, fixed threshold 0.5, all files |")
    print("|---|---:|---:|---:|")
    table = corpus_table(variants, corpora)
    for v in variants:
        d, n, a, r = total(table[v], lambda f: True)
        cell = "n/a"
        if nab:
            cell = f"{nab[2](nab[0][v]):.2f}"
        mark = " (shipped)" if v == args.default else ""
        print(f"| {v}{mark} | {d / n:.3f} ({d}/{n}) | {1e4 * a / r:.2f} ({a}) | {cell} |")
    print()

    chosen, held = corpus_cv(table, variants, args.default)
    d, n, a, r = held
    dd, dn, da, dr = total(table[args.default], lambda f: True)
    print("Corpus, leave one family out (variant chosen on the other families):")
    print("| family | chosen |")
    print("|---|---|")
    for fam, v in chosen.items():
        print(f"| {fam} | {v} |")
    print(f"\nheld-out total: recall {d / n:.3f} ({d}/{n}), false alarms {1e4 * a / r:.2f} / 10k ({a}); "
          f"the default everywhere: recall {dd / dn:.3f}, {1e4 * da / dr:.2f} / 10k")
    if nab:
        rows, cats, score = nab
        chosen, held, scored = nab_cv(rows, cats, score, variants, args.default)
        print("\nNAB, leave one category out (variant chosen on the other categories, fixed threshold 0.5):")
        print("| category | chosen | held-out score | default's score |")
        print("|---|---|---:|---:|")
        for c in scored:
            own = score([r for r in rows[args.default] if r["category"] == c])
            print(f"| {c} | {chosen[c]} | {held[c]:.2f} | {own:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
