"""Validation accuracy and wall time of each training recipe, side by side, in one run.

    python bench/quality.py                      # every part (about 15 minutes on 2 cores)
    python bench/quality.py --only photos,fewshot

Rows: head only (`--freeze all`), the two-phase default, a one-phase full fine-tune, and a plain
scikit-learn logistic regression on the same frozen embeddings (the reference for head only).
Every tlapp row is a fresh `tlapp train` process with an empty embedding cache, so its wall time
includes start-up, decoding and the embedding pass. Parts:
  digits    the sample digits, resnet18 from random weights (offline), 64 px, 5 epochs
  transfer  resnet18 at 32 px trained on digits 0-4 (30 epochs, from scratch), then 10 images
            per class of 5-9:
            the default recipe from that run against training from scratch, 3 seeds
  photos    tf_efficientnet_lite0 with real ImageNet weights on the ants/bees photos
  fewshot   the same with 10 training photos per class, 3 draws
Real weights and photos: see bench/realdata.py. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
DIGITS = ROOT / "assets" / "digits"
LITE0 = "tf_efficientnet_lite0"


def tlapp_train(data: Path, work: Path, **options) -> dict:
    """One `tlapp train` process; returns accuracy (best epoch) and wall time."""
    out = work / f"run-{len(list(work.glob('run-*')))}"
    args = [sys.executable, "-m", "tlapp", "train", str(data), "--out", str(out)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "TLAPP_CACHE": str(work / f"cache-{out.name}"), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"tlapp train failed: {done.stderr[-2000:]}")
    info = json.loads((out / "config.json").read_text())
    return {"acc": info["best_val_accuracy"], "wall": wall, "run": out}


def probe(model_name: str, weights: Path | None, data: Path, img_size: int) -> dict:
    """scikit-learn's logistic regression on plain centre-crop embeddings (in this process)."""
    import timm
    import torch
    from sklearn.linear_model import LogisticRegression

    from tlapp.data import load_dataset, open_image

    start = time.perf_counter()
    dataset = load_dataset(data)
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=len(dataset.classes))
    if weights:  # the backbone only, as tlapp loads it
        from safetensors.torch import load_file

        own = model.state_dict()
        state = {k: v for k, v in load_file(weights).items() if own[k].shape == v.shape}
        model.load_state_dict(state, strict=False)
    cfg = timm.data.resolve_model_data_config(model)
    cfg["input_size"] = (3, img_size, img_size)
    transform = timm.data.create_transform(**cfg, is_training=False)
    model.eval()

    def embed(split):
        rows = dataset.split(split)
        x = torch.stack([transform(open_image(p)) for p in rows["path"]])
        with torch.inference_mode():
            feats = torch.cat(
                [
                    model.forward_head(model.forward_features(b), pre_logits=True)
                    for b in x.split(32)
                ]
            )
        return feats.numpy(), dataset.targets(split)

    (xt, yt), (xv, yv) = embed("train"), embed("val")
    acc = LogisticRegression(max_iter=5000).fit(xt, yt).score(xv, yv)
    return {"acc": acc, "wall": time.perf_counter() - start}


def subset(source: Path, dest: Path, per_class: int, seed: int, classes=None) -> Path:
    """train/ with `per_class` images of each class drawn with `seed`, val/ with the rest."""
    rng = random.Random(seed)
    train_root = source / "train" if (source / "train").is_dir() else source
    for class_dir in sorted(p for p in train_root.iterdir() if p.is_dir()):
        if classes and class_dir.name not in classes:
            continue
        files = sorted(class_dir.iterdir())
        rng.shuffle(files)
        picked, rest = files[:per_class], files[per_class:]
        if (source / "val").is_dir():
            rest = sorted((source / "val" / class_dir.name).iterdir())
        for split, group in (("train", picked), ("val", rest)):
            (dest / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            for f in group:
                shutil.copy(f, dest / split / class_dir.name / f.name)
    return dest


def recipes(data: Path, work: Path, probe_args, **common) -> dict:
    return {
        "head only": tlapp_train(data, work, freeze="all", **common),
        "two-phase (default)": tlapp_train(data, work, **common),
        "full fine-tune, one phase": tlapp_train(data, work, recipe="one-phase", **common),
        "linear probe (scikit-learn)": probe(*probe_args) if probe_args else None,
    }


def mean_rows(runs: list[dict]) -> dict:
    out = {}
    for name in runs[0]:
        found = [r[name] for r in runs if r[name]]
        if found:
            accs = [f["acc"] for f in found]
            out[name] = {
                "acc": float(np.mean(accs)),
                "std": float(np.std(accs)),
                "wall": float(np.mean([f["wall"] for f in found])),
            }
    return out


def part_digits(work: Path, epochs: int) -> dict:
    common = dict(model="resnet18", weights="none", img_size=64, epochs=epochs)
    return recipes(DIGITS, work, ("resnet18", None, DIGITS, 64), **common)


def part_transfer(work: Path, epochs: int, seeds: int) -> dict:
    source = subset(DIGITS, work / "source", 10_000, 0, classes=[str(d) for d in range(5)])
    common = dict(model="resnet18", img_size=32)
    # The source model: 30 epochs of one-phase training from scratch on digits 0-4.
    pre = tlapp_train(source, work, weights="none", epochs=30, recipe="one-phase", **common)
    runs = []
    for seed in range(seeds):
        target = subset(DIGITS, work / f"target-{seed}", 10, seed, [str(d) for d in range(5, 10)])
        w = pre["run"] / "model.safetensors"
        runs.append(
            {
                "head only (pretrained on 0-4)": tlapp_train(
                    target, work, weights=pre["run"], freeze="all", seed=seed, **common
                ),
                "two-phase, pretrained on 0-4": tlapp_train(
                    target, work, weights=pre["run"], epochs=epochs, seed=seed, **common
                ),
                "two-phase, from scratch": tlapp_train(
                    target, work, weights="none", epochs=epochs, seed=seed, **common
                ),
                "linear probe on 0-4 features": probe("resnet18", w, target, 32),
            }
        )
    return mean_rows(runs)


def part_photos(work: Path, photos: Path, weights: Path, epochs: int) -> dict:
    common = dict(model=LITE0, weights=weights, img_size=224, epochs=epochs)
    return recipes(photos, work, (LITE0, weights, photos, 224), **common)


def part_fewshot(work: Path, photos: Path, weights: Path, epochs: int, seeds: int) -> dict:
    runs = []
    for seed in range(seeds):
        data = subset(photos, work / f"few-{seed}", 10, seed)
        common = dict(model=LITE0, weights=weights, img_size=224, epochs=epochs, seed=seed)
        runs.append(recipes(data, work, (LITE0, weights, data, 224), **common))
    return mean_rows(runs)


def table(results: dict) -> str:
    lines = ["| data | recipe | val accuracy | wall time |", "|---|---|---|---|"]
    for part, rows in results.items():
        for name, r in rows.items():
            if r:
                spread = f" ± {r['std']:.1%}" if "std" in r else ""
                lines.append(f"| {part} | {name} | {r['acc']:.1%}{spread} | {r['wall']:.1f} s |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpu = next((ln.split(":")[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), "")
    return (
        f"{cpu or platform.processor()}, {len(os.sched_getaffinity(0))} cores, "
        f"torch {torch.__version__}, no GPU"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default="digits,transfer,photos,fewshot")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--photos", default=os.environ.get("TLAPP_PHOTOS", ""))
    p.add_argument("--weights", default="/work/shared/weights/tf_efficientnet_lite0.safetensors")
    args = p.parse_args()
    from realdata import photo_set

    parts, results = args.only.split(","), {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "digits" in parts:
            results["digits (random init)"] = part_digits(work, args.epochs)
        if "transfer" in parts:
            results[f"10-shot transfer, {args.seeds} seeds"] = part_transfer(
                work, args.epochs, args.seeds
            )
        real = Path(args.weights)
        if {"photos", "fewshot"} & set(parts):
            if not real.exists():
                raise SystemExit(f"{real} is missing: make it with bench/realdata.py weights")
            photos = photo_set(args.photos or None)
            if "photos" in parts:
                results["ants/bees photos, ImageNet weights"] = part_photos(
                    work, photos, real, args.epochs
                )
            if "fewshot" in parts:
                results[f"10 photos per class, {args.seeds} draws"] = part_fewshot(
                    work, photos, real, args.epochs, args.seeds
                )
    print(f"Machine: {machine()}.\n")
    print(table(results))


if __name__ == "__main__":
    main()
