"""What the loop trains on: frozen embeddings for the head (phase one), decoded images after.

    features = gather_features(trainer)    # frozen embeddings of every image, cached on disk
    images = image_source(trainer)         # decoded-image batches for fine-tuning

Phase one treats the backbone as a fixed function: it runs once per image view (eval mode,
inference mode) and the head is fitted on what it returned, in well under a second; a second
run on the same images (another learning rate, more epochs) reads the embeddings from disk.

    store = EmbeddingStore(cache_dir, key)
    table = store.lookup(hashes)              # {hash: [views, dim]} for images already cached
    store.add(new_rows)                       # written atomically

The cache lives in `<cache_dir>/<key>/embeddings.safetensors`, one [views, dim] tensor per image
named by the hash of the file's bytes: a changed file gets a new name and is computed again. The
key covers the model, its weights, the image size, the preprocessing, the precision and the view
policy, so any change there starts a fresh cache.

View policy: the plain evaluation view of every image (timm's resize and crop for the model's
crop mode, as the predictor takes it); augmentation is for the fine-tuning phase.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import runs
from ..data import default_cache_dir, file_hash, file_hashes
from ..geometry import eval_geometry
from ..runs import atomic_write
from .batches import BatchFeed, DecodedImages, ImageSource, to_model_input
from .distributed import split_work
from .reuse import batchnorm_layers, cache_key, load_batchnorm, save_batchnorm

if TYPE_CHECKING:
    from .loop import Trainer

# Phase one embeds the plain view of each image only: on every dataset of bench/quality.py the
# head fitted on plain views matched or beat one fitted with augmented views as extra rows, at a
# third of the embedding cost. `embed` and the head fit still take several views per image.
POLICY = "the plain evaluation view of each image"

# Random weights get their BatchNorm statistics from a seeded random sample of this many training
# images, not from all of them: a layer's per-channel mean and variance settle within a couple
# of batches, and each image of this pass costs as much as its embedding (over every image, the
# estimate took a fifth of a first head-only run on ~250 photos).
BATCHNORM_IMAGES = 64


class EmbeddingStore:
    """Embeddings of image views on disk, one tensor per image content hash."""

    def __init__(self, cache_dir: str | os.PathLike, key: str):
        self.folder = Path(cache_dir) / key
        self.file = self.folder / "embeddings.safetensors"

    def lookup(self, hashes: list[str]) -> dict[str, torch.Tensor]:
        if not self.file.exists():
            return {}
        wanted = set(hashes)
        with safe_open(str(self.file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k in wanted}

    def add(self, rows: dict[str, torch.Tensor]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        everything = self.lookup_all() | {k: v.contiguous() for k, v in rows.items()}
        atomic_write(self.file, lambda tmp: save_file(everything, tmp))

    def lookup_all(self) -> dict[str, torch.Tensor]:
        if not self.file.exists():
            return {}
        with safe_open(str(self.file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}


@torch.inference_mode()
def embed(
    model: torch.nn.Module,
    feed: BatchFeed,
    indices: list[int],
    views: int,
    norm: dict,
    device: torch.device,
    autocast,
    channels_last: bool,
    progress=None,
) -> torch.Tensor:
    """[len(indices), views, dim] backbone outputs (pre-logits) for the chosen images."""
    model.eval()
    out = []
    for start in range(0, len(indices), feed.batch_size):
        chunk = indices[start : start + feed.batch_size]
        per_view = []
        for v in range(views):
            pixels = torch.stack([feed.view(i, augmented=v > 0) for i in chunk])
            x = to_model_input(pixels, norm["mean"], norm["std"], device, channels_last)
            with autocast:
                per_view.append(
                    model.forward_head(model.forward_features(x), pre_logits=True).float().cpu()
                )
        out.append(torch.stack(per_view, dim=1))
        if progress:
            progress(start + len(chunk), len(indices))
    return torch.cat(out) if out else torch.empty(0, views, 0)


# ----------------------------------------------------------------------------- sources
@dataclass
class Features:
    """Frozen-backbone embeddings of the run's images: what phase one fits the head on."""

    train: torch.Tensor  # [images, views, dim]: the plain view first, then augmented views
    train_targets: torch.Tensor
    val: torch.Tensor  # [images, dim]: the plain view
    val_targets: torch.Tensor
    store: EmbeddingStore  # where they are kept, with what else was computed from them
    train_hashes: list[str]  # the training images' contents, in the order of `train`
    test: torch.Tensor = torch.empty(0)  # [images, dim]: the plain view, scores phase one's head


def image_feed(t: Trainer, split: str, paths: list[str], targets, train: bool) -> BatchFeed:
    """Images decoded once as the evaluation transform resizes them (its crop mode), batched."""
    images = DecodedImages.build(
        paths,
        eval_geometry(t.data_cfg, t.config.img_size),
        int(t.config.memory_budget_gb * (1 << 30) * (0.8 if train else 0.2)),
        progress=lambda done, total: t.report(f"Decoding {split} images", done, total),
    )
    return BatchFeed(
        images,
        targets,
        t.config.img_size,
        t.batch_size,
        augment=train and t.config.augment,
        shuffle=train,
        seed=t.config.seed,
        pin=t.cuda,
    )


def image_source(t: Trainer) -> ImageSource:
    """The run's images, decoded: the training ones now, the validation ones when first used
    (after the training images' embeddings, whose progress then shows sooner: 0.4 s of 2.9 on
    the ants/bees photos)."""
    d = t.dataset
    train = image_feed(t, "training", d.split("train")["path"].tolist(), d.targets("train"), True)

    def val() -> BatchFeed:
        return image_feed(t, "validation", d.split("val")["path"].tolist(), d.targets("val"), False)

    return ImageSource(train, val, t.data_cfg, t.device, t.channels_last)


def weights_identity(t: Trainer) -> str:
    """What the backbone's weights are, for the cache key: hub name, seed, or file content."""
    if t.weights.kind == "pretrained":
        return f"pretrained {t.weights.source}"
    if t.weights.kind == "random":
        return f"random seed {t.config.seed}"
    path = Path(t.config.weights)
    return f"file {file_hash(str(path / runs.WEIGHTS if path.is_dir() else path))}"


def embedding_key(t: Trainer, train_hashes: list[str] | None = None) -> str:
    """Everything embeddings depend on; with recalibrated BatchNorm, the training images too."""
    keys = ("mean", "std", "interpolation", "crop_pct", "crop_mode")
    cfg = {k: t.data_cfg.get(k) for k in keys}
    return cache_key(
        # The sample (seeded by the weights' seed), its size and the batch size change the statistics.
        batchnorm_from=cache_key(
            images=train_hashes, batch_size=t.batch_size, sample=BATCHNORM_IMAGES
        )
        if train_hashes
        else "weights",
        model=t.config.model,
        weights=weights_identity(t),
        img_size=t.config.img_size,
        preprocessing=cfg,
        precision=t.precision,
        timm=timm.__version__,
        views="plain",
    )


def gather_features(
    t: Trainer, images: ImageSource | None = None, with_test: bool = True
) -> Features:
    """Embeddings of every train, val and test image: from the cache, or computed now and cached.
    The test ones only ever score the kept head at the end: nothing is fitted or chosen on them.

    Missing ones are computed from `images` when the run has decoded them already (fine-tuning),
    otherwise only the missing images are decoded."""
    d, views = t.dataset, 1
    train_paths, val_paths = d.split("train")["path"].tolist(), d.split("val")["path"].tolist()
    test_paths = d.split("test")["path"].tolist() if with_test else []  # methods never use them
    paths = train_paths + val_paths + test_paths
    hashes = file_hashes(paths, t.report)
    recalibrated = t.weights.kind == "random"
    key = embedding_key(t, hashes[: len(train_paths)] if recalibrated else None)
    store = EmbeddingStore(t.config.cache_dir or default_cache_dir(), key)
    if recalibrated:
        images = recalibrate_batchnorm(t, store, images)
    cached = store.lookup(hashes) if t.config.feature_cache else {}
    missing = [i for i, h in enumerate(hashes) if h not in cached]
    t.cache_hits = len(paths) - len(missing)
    if missing:
        # Several processes embed a share each and all get every row: then each fits the same
        # head on the same numbers, and they agree on phase one without exchanging a model.
        new = split_work(
            t.world,
            missing,
            lambda part: torch.stack(list(_embed_missing(t, paths, part, views, images))),
        )
        new = {hashes[i]: row for i, row in zip(missing, new)}
        if t.config.feature_cache and t.world.is_main:
            store.add(new)
        cached |= new
    rows = torch.stack([cached[h][:views] for h in hashes])
    n, v = len(train_paths), len(train_paths) + len(val_paths)
    return Features(
        rows[:n],
        torch.as_tensor(d.targets("train")),
        rows[n:v, 0],
        torch.as_tensor(d.targets("val")),
        store,
        hashes[:n],
        rows[v:, 0],
    )


@torch.no_grad()
def reestimate_batchnorm(
    model: torch.nn.Module, batches: Iterable[torch.Tensor], autocast=None
) -> int:
    """Every BatchNorm layer's running statistics replaced by their cumulative average over
    `batches` (model inputs), the rest of the model in eval mode; weights are untouched and each
    layer's momentum is restored. Returns how many layers were re-estimated."""
    norms = batchnorm_layers(model)
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    model.eval()
    for m in norms:
        m.train()
    try:
        with autocast or contextlib.nullcontext():
            for x in batches:
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


def recalibrate_batchnorm(
    t: Trainer, store: EmbeddingStore, images: ImageSource | None
) -> ImageSource | None:
    """BatchNorm running statistics averaged over the plain views of a sample of the training
    images (BATCHNORM_IMAGES).

    Random weights come with statistics of nothing (mean 0, variance 1), which make eval-mode
    features explode and disagree with the train-mode ones of fine-tuning. They carry nothing to
    keep, so every layer's are estimated once, before phase one; from then on frozen layers keep
    them. Pretrained and file weights are never touched. The statistics are kept with the
    embeddings, so a run on the same training images takes them without decoding an image.
    Returns the decoded images when it had to decode them, for the embedding pass."""
    if not batchnorm_layers(t.model):
        return images
    if not (t.config.feature_cache and load_batchnorm(store, t.model)):
        images = images or image_source(t)
        reestimate_batchnorm(t.model, _plain_batches(t, images.train), t.autocast)
        if t.config.feature_cache and t.world.is_main:
            save_batchnorm(store, t.model)
    t.notes.append(
        "The backbone starts from random weights, so its BatchNorm statistics were estimated on "
        f"{min(BATCHNORM_IMAGES, len(t.dataset.split('train')))} of your training images before "
        "the head was fitted."
    )
    return images


def _plain_batches(t: Trainer, feed: BatchFeed):
    """Model inputs of the plain views of a seeded random sample of the training images, batch by
    batch: shuffled, so that every batch mixes the classes as training batches do."""
    order = np.random.default_rng(t.config.seed).permutation(len(feed.images))
    sample = order[:BATCHNORM_IMAGES].tolist()
    for start in range(0, len(sample), feed.batch_size):
        chunk = sample[start : start + feed.batch_size]
        pixels = torch.stack([feed.view(i, augmented=False) for i in chunk])
        t.report("Estimating BatchNorm statistics", start + len(chunk), len(sample))
        yield to_model_input(
            pixels, t.data_cfg["mean"], t.data_cfg["std"], t.device, t.channels_last
        )


def _embed_missing(t: Trainer, paths, missing, views, images: ImageSource | None, total=None):
    """[len(missing), views, dim] embeddings, in the order of `missing`."""
    # Counted over all the missing images: training ones first, then validation, then test.
    total = total or len(missing)
    progress = lambda done, _: t.report("Computing embeddings", done, total)  # noqa: E731
    if images is None:
        return _embed_decoding(t, [paths[i] for i in missing], views, progress)
    n_train, n_decoded = (
        len(images.train.images),
        len(t.dataset.split("val")) + len(images.train.images),
    )
    test = [paths[i] for i in missing if i >= n_decoded]  # not decoded for fine-tuning: now
    if test:
        decoded = _embed_missing(t, paths, missing[: -len(test)], views, images, total)
        after = lambda done, _: progress(total - len(test) + done, None)  # noqa: E731
        return decoded + list(_embed_decoding(t, test, views, after))
    train = [i for i in missing if i < n_train]
    val = [i - n_train for i in missing if i >= n_train]
    done = embed(
        t.model,
        images.train,
        train,
        views,
        t.data_cfg,
        t.device,
        t.autocast,
        t.channels_last,
        progress,
    )
    if not val:  # every validation image is cached: none is decoded
        return list(done)
    # Validation images are decoded without augmentation: their augmented views are never used.
    after_train = lambda done, _: progress(len(train) + done, None)  # noqa: E731
    plain = embed(
        t.model, images.val, val, 1, t.data_cfg, t.device, t.autocast, t.channels_last, after_train
    )
    return list(done) + list(plain.expand(-1, views, -1).clone())


def _embed_decoding(t: Trainer, paths: list[str], views: int, progress) -> torch.Tensor:
    """[len(paths), views, dim] embeddings of images decoded for this alone."""
    targets = np.zeros(len(paths), dtype=np.int64)
    feed = image_feed(t, "new", paths, targets, train=True)
    indices = list(range(len(paths)))
    norm, device, autocast, channels_last = t.data_cfg, t.device, t.autocast, t.channels_last
    return embed(t.model, feed, indices, views, norm, device, autocast, channels_last, progress)
