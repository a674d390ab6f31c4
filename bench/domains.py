"""Test accuracy and macro F1 of tlapp's recipes on the kinds of images our users bring, within a
time budget, in one run.

    python bench/domains.py --json bench/results/domains.json   # 3 seeds (~50 min, 2 cores)
    python bench/domains.py --only tiles --seeds 1               # a subset

Parts (bench/domaindata.py builds them from public repositories; TLAPP_DOMAINS says where):
  mri    brain MRI slices, greyscale, 4 classes: 1,200 training images, the official test images
         that are not copies of training ones (306)
  tiles  magnetic-tile surface defects, greyscale, 6 classes, 30 to 1: tlapp's own split
  food   ten Food-101 dishes, fine-grained photos: 100 training and 50 test images per class
Rows, tf_efficientnet_lite0 with ImageNet weights at 224 px, every setting tlapp's default:
  head only                     --freeze all
  default, 2-minute budget      --time-budget 2m: fine-tuning planned to fit
  default, no budget            the defaults (every stage fine-tuned, 5 epochs), --default-seeds
  linear probe (scikit-learn)   as in bench/quality.py
Each row is a fresh process with an empty embedding cache, timed from outside. Checks (PASS or
MISS, with the figures): the budgeted default at least the probe's and head only's test
accuracy (mean over seeds), within its budget; on tiles, its macro F1 at least 5 points above
head only's; the default without a budget within 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (bench/quality.py: child processes, summaries)
from results import machine_line, write_results  # noqa: E402

DOMAINS = Path(os.environ.get("TLAPP_DOMAINS", "/work/data/bench-domains"))
PARTS = {
    "mri": "brain MRI, greyscale",
    "tiles": "surface defects, 30:1",
    "food": "10 dishes, fine-grained",
}
HEAD, BUDGET, DEFAULT, PROBE = (
    quality.HEAD,
    "default, 2-minute budget",
    "default, no budget",
    quality.PROBE,
)
ROWS = (HEAD, BUDGET, DEFAULT, PROBE)
BUDGET_S = 120
DEFAULT_LIMIT_S = 600


def part(bench: quality.Bench, name: str, weights: Path, seeds: int, default_seeds: int):
    data = DOMAINS / name

    def one(seed: int) -> dict:
        common = dict(model=quality.LITE0, img_size=224, weights=str(weights), seed=seed)
        label = f"{name} seed {seed}"
        rows = {
            HEAD: bench.train(f"{label}: {HEAD}", data, freeze="all", **common),
            BUDGET: bench.train(f"{label}: {BUDGET}", data, time_budget=BUDGET_S, **common),
        }
        if seed < default_seeds:
            rows[DEFAULT] = bench.train(f"{label}: {DEFAULT}", data, **common)
        rows[PROBE] = bench.probe(f"{label}: {PROBE}", data, quality.LITE0, str(weights), 224, seed)
        return rows

    return quality.over_seeds(seeds, one)


def cell(runs: list[dict]) -> str:
    s = quality.summary(runs)
    if s is None:
        return "—"
    if s["acc"] is None:
        return f"failed ({s['wall']:.0f} s)"
    spread = f" ± {s['std']:.1%}" if s["std"] is not None else ""
    return f"{s['acc']:.1%}{spread} · F1 {s['f1']:.3f} · {s['wall']:.0f} s"


def table(results: dict) -> str:
    return quality.markdown_table(results, PARTS, ROWS, cell)


def mean(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def checks(results: dict) -> list[str]:
    out = []
    for name, rows in results.items():
        budget = rows.get(BUDGET, [])
        acc = mean(budget, "acc")
        for other in (PROBE, HEAD):
            theirs = mean(rows.get(other, []), "acc")
            if acc is None or theirs is None:
                continue
            verdict = "PASS" if acc >= theirs else "MISS"
            out.append(
                f"{verdict} {name}: budgeted default {acc:.1%} vs {other} {theirs:.1%} on test "
                f"({(acc - theirs) * 100:+.1f} points)"
            )
        slowest = max((r["wall"] for r in budget), default=None)
        if slowest is not None:
            verdict = "PASS" if slowest <= BUDGET_S else "MISS"
            out.append(
                f"{verdict} {name}: budgeted runs took at most {slowest:.0f} s of {BUDGET_S}"
            )
        if name == "tiles":
            f1, head_f1 = mean(budget, "f1"), mean(rows.get(HEAD, []), "f1")
            if f1 is not None and head_f1 is not None:
                gain = (f1 - head_f1) * 100
                verdict = "PASS" if gain >= 5 else "MISS"
                out.append(
                    f"{verdict} tiles: macro F1 {f1:.3f} vs head only {head_f1:.3f} "
                    f"({gain:+.1f} points; the target is +5)"
                )
        walls = [r["wall"] for r in rows.get(DEFAULT, [])]
        if walls:
            verdict = "PASS" if max(walls) <= DEFAULT_LIMIT_S else "MISS"
            out.append(
                f"{verdict} {name}: default without a budget took {max(walls):.0f} s "
                f"(limit {DEFAULT_LIMIT_S})"
            )
    return out


def choices(results: dict) -> list[str]:
    """What the budget chose in each run, from its run.json notes."""
    import json

    out = []
    for name, rows in results.items():
        for r in rows.get(BUDGET, []):
            try:
                info = json.loads((Path(r["run"]) / "run.json").read_text())
            except (OSError, ValueError, KeyError):
                continue
            said = [n for n in info.get("notes", []) if "budget" in n]
            out.append(f"{name} seed {r['seed']}: " + " ".join(said))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--default-seeds", type=int, default=1, help="seeds of the unbudgeted row")
    p.add_argument("--weights", default=quality.LITE0_FILE, help="tf_efficientnet_lite0 file")
    p.add_argument("--json", default="", help="write the raw results here (bench/results/…)")
    args = p.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlapp-domains-") as tmp:
        bench, results = quality.Bench(Path(tmp)), {}
        for name in args.only.split(","):
            results[name] = part(bench, name, Path(args.weights), args.seeds, args.default_seeds)
        said = choices(results)
    lines = checks(results)
    text = "\n".join(
        [
            machine_line(quality.precision_of(results)),
            "",
            table(results),
            "",
            "\n".join(lines),
            "",
            "What the budget chose:",
            *said,
            f"\nWhole benchmark: {(time.perf_counter() - start) / 60:.1f} minutes.",
        ]
    )
    print(text)
    if args.json:
        record = {"parts": results, "report": text, "checks": lines, "choices": said}
        tables = {"accuracy": table(results), "checks": "```\n" + "\n".join(lines) + "\n```"}
        write_results(args.json, record, tables)


if __name__ == "__main__":
    main()
