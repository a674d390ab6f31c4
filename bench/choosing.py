"""How the kept epoch is chosen, measured on test: the highest validation score (`best`, the
default) against a later epoch having to win by more than one standard error of the paired
difference on the validation images (`clear`), on the kinds of images our users bring.

    python bench/choosing.py --json bench/results/choosing.json   # seeds 3-5 (~40 min, 2 cores)

Seeds 3, 4 and 5 by default: bench/domains.py scores seeds 0-2, whose test figures were seen
before `clear` was written; these are fresh draws of the split and the training order. Rows,
each a fresh process (bench/quality.py), tf_efficientnet_lite0 with ImageNet weights at 224 px:
  head only                          --freeze all: phase one alone, the model both rules start from
  2-minute budget, best epoch        --time-budget 2m (the default choice)
  2-minute budget, clear win         --time-budget 2m --choose-epoch clear
The sets: bench/domaindata.py (TLAPP_DOMAINS says where).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import domains  # noqa: E402  (the sets and their names)
import quality  # noqa: E402  (child processes, summaries)
from results import machine_line, write_results  # noqa: E402

HEAD, BEST, CLEAR = "head only", "2-minute budget, best epoch", "2-minute budget, clear win"
ROWS = (HEAD, BEST, CLEAR)


def part(bench: quality.Bench, name: str, weights: Path, seeds: list[int]) -> dict:
    data, rows = domains.DOMAINS / name, {}
    for seed in seeds:
        common = dict(model=quality.LITE0, img_size=224, weights=str(weights), seed=seed)
        label = f"{name} seed {seed}"
        budget = dict(time_budget=domains.BUDGET_S, **common)
        for row, result in (
            (HEAD, bench.train(f"{label}: {HEAD}", data, freeze="all", **common)),
            (BEST, bench.train(f"{label}: {BEST}", data, **budget)),
            (CLEAR, bench.train(f"{label}: {CLEAR}", data, choose_epoch="clear", **budget)),
        ):
            rows.setdefault(row, []).append({**result, "seed": seed})
    return rows


def per_seed(results: dict) -> list[str]:
    """Seed by seed: the epoch each rule kept and its test accuracy against head only's."""
    out = []
    for name, rows in results.items():
        for head, best, clear in zip(rows[HEAD], rows[BEST], rows[CLEAR], strict=True):
            gains = [
                f"{rule} kept epoch {r['kept_epoch']}, "
                + (
                    f"{(r['acc'] - head['acc']) * 100:+.1f}"
                    if None not in (r["acc"], head["acc"])
                    else "n/a"
                )
                for rule, r in (("best", best), ("clear", clear))
            ]
            out.append(f"{name} seed {head['seed']}: " + "; ".join(gains) + " points vs head only")
    return out


def totals(results: dict) -> list[str]:
    """Each rule's mean test accuracy over every set and seed, minus head only's."""
    out = []
    for rule in (BEST, CLEAR):
        diffs = [
            r["acc"] - h["acc"]
            for rows in results.values()
            for h, r in zip(rows[HEAD], rows[rule], strict=True)
            if None not in (r["acc"], h["acc"])
        ]
        worst = min(diffs) * 100 if diffs else float("nan")
        out.append(
            f"{rule}: {np.mean(diffs) * 100:+.2f} points vs head only on average over "
            f"{len(diffs)} runs; below head only in {sum(d < 0 for d in diffs)}; worst {worst:+.1f}"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(domains.PARTS), help="parts, comma-separated")
    p.add_argument("--seeds", default="3,4,5", help="seeds, comma-separated")
    p.add_argument("--weights", default=quality.LITE0_FILE, help="tf_efficientnet_lite0 file")
    p.add_argument("--json", default="", help="write the raw results here (bench/results/…)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlapp-choosing-") as tmp:
        bench, results = quality.Bench(Path(tmp)), {}
        for name in args.only.split(","):
            results[name] = part(bench, name, Path(args.weights), seeds)
    table = quality.markdown_table(results, domains.PARTS, ROWS, domains.cell)
    lines = per_seed(results) + [""] + totals(results)
    text = "\n".join(
        [
            machine_line(quality.precision_of(results)),
            "",
            table,
            "",
            "\n".join(lines),
            f"\nWhole benchmark: {(time.perf_counter() - start) / 60:.1f} minutes.",
        ]
    )
    print(text)
    if args.json:
        record = {"parts": results, "report": text, "seed_by_seed": lines}
        tables = {"accuracy": table, "seed_by_seed": "```\n" + "\n".join(lines) + "\n```"}
        write_results(args.json, record, tables)


if __name__ == "__main__":
    main()
