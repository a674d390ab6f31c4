"""What the loop trains on: batches of decoded images, or cached embeddings for head only.

    source = make_source(trainer)    # ImageSource, or EmbeddingSource when only the head trains

When every stage is frozen the backbone is a fixed function, so it runs once per image view
(eval mode, inference mode) and only the classifier trains, on what the backbone returned:
an epoch then takes milliseconds instead of minutes.

    store = EmbeddingStore(cache_dir, key)
    table = store.lookup(hashes)              # {hash: [views, dim]} for images already cached
    store.add(new_rows)                       # written atomically

The cache lives in `<cache_dir>/<key>/embeddings.safetensors`, one [views, dim] tensor per image
named by the hash of the file's bytes: a changed file gets a new name and is computed again. The
key covers the model, its weights, the image size, the preprocessing, the precision and the view
policy, so any change there starts a fresh cache.

View policy: view 0 is the plain evaluation view (centre crop). With augmentation on, each image
also gets AUGMENTED_VIEWS random augmented views, and every epoch trains on one view per image
drawn at random; validation always uses the plain view.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import runs
from ..data import file_hash, file_hashes
from ..runs import atomic_write
from .batches import BatchFeed, DecodedImages, ImageSource, cache_side, epoch_order, to_model_input

if TYPE_CHECKING:
    from .loop import Trainer

AUGMENTED_VIEWS = 2
POLICY = f"plain + {AUGMENTED_VIEWS} augmented views (random resized crop, flip, colour jitter)"


def default_cache_dir() -> Path:
    return Path(os.environ.get("TLAPP_CACHE", Path.home() / ".cache" / "tlapp"))


def cache_key(**parts) -> str:
    """A short stable name for everything the embeddings depend on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


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


class EmbeddingSource:
    """Training batches of cached embeddings; the model's classifier is all that runs."""

    def __init__(
        self,
        train: torch.Tensor,
        train_targets: torch.Tensor,
        val: torch.Tensor,
        val_targets: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: bool,
        classifier: torch.nn.Module,
        device: torch.device,
    ):
        self.train, self.val = train.to(device), val.to(device)
        self.train_targets, self.val_targets = train_targets.to(device), val_targets.to(device)
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.classifier = classifier

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.batch_size)

    def train_batches(self, epoch: int):
        order = epoch_order(len(self.train), self.seed, epoch).to(self.train.device)
        views = self.train.shape[1]
        pick = (
            torch.randint(
                views,
                (len(order),),
                generator=torch.Generator().manual_seed(self.seed * 7919 + epoch),
            ).to(self.train.device)
            if self.augment and views > 1
            else torch.zeros(len(order), dtype=torch.long, device=self.train.device)
        )
        for i in range(0, len(order), self.batch_size):
            index = order[i : i + self.batch_size]
            yield self.train[index, pick[index]], self.train_targets[index]

    def val_batches(self):
        for i in range(0, len(self.val), self.batch_size * 8):
            yield (
                self.val[i : i + self.batch_size * 8, 0],
                self.val_targets[i : i + self.batch_size * 8],
            )

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(inputs)


# ----------------------------------------------------------------------------- sources
def make_source(t: Trainer):
    """The batches a run trains on: embeddings when only the head trains, else images."""
    return embedding_source(t) if t.head_only else image_source(t)


def image_feed(t: Trainer, split: str, paths: list[str], targets, train: bool) -> BatchFeed:
    """Images decoded once at the size the evaluation transform resizes to, batched."""
    side = cache_side(t.config.img_size, t.data_cfg.get("crop_pct"))
    images = DecodedImages.build(
        paths,
        side,
        t.data_cfg.get("interpolation", "bicubic"),
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
    d = t.dataset
    train = image_feed(t, "training", d.split("train")["path"].tolist(), d.targets("train"), True)
    val = image_feed(t, "validation", d.split("val")["path"].tolist(), d.targets("val"), False)
    return ImageSource(train, val, t.data_cfg, t.device, t.channels_last)


def weights_identity(t: Trainer) -> str:
    """What the backbone's weights are, for the cache key: hub name, seed, or file content."""
    if t.weights.kind == "pretrained":
        return f"pretrained {t.weights.source}"
    if t.weights.kind == "random":
        return f"random seed {t.config.seed}"
    path = Path(t.config.weights)
    return f"file {file_hash(str(path / runs.WEIGHTS if path.is_dir() else path))}"


def embedding_key(t: Trainer) -> str:
    cfg = {k: t.data_cfg[k] for k in ("mean", "std", "interpolation", "crop_pct")}
    return cache_key(
        model=t.config.model,
        weights=weights_identity(t),
        img_size=t.config.img_size,
        preprocessing=cfg,
        precision=t.precision,
        timm=timm.__version__,
        views=POLICY if t.config.augment else "plain",
    )


def embedding_source(t: Trainer) -> EmbeddingSource:
    """Embeddings of every train and val image, from the cache or computed now (and cached)."""
    d, views = t.dataset, 1 + (AUGMENTED_VIEWS if t.config.augment else 0)
    store = EmbeddingStore(t.config.cache_dir or default_cache_dir(), embedding_key(t))
    paths = d.split("train")["path"].tolist() + d.split("val")["path"].tolist()
    hashes = file_hashes(paths)
    cached = store.lookup(hashes)
    missing = [i for i, h in enumerate(hashes) if h not in cached]
    t.cache_hits = len(paths) - len(missing)
    if missing:
        targets = np.zeros(len(missing), dtype=np.int64)
        feed = image_feed(t, "new", [paths[i] for i in missing], targets, train=True)
        table = embed(
            t.model,
            feed,
            list(range(len(missing))),
            views,
            t.data_cfg,
            t.device,
            t.autocast,
            t.channels_last,
            progress=lambda done, total: t.report("Computing embeddings", done, total),
        )
        new = {hashes[i]: table[k] for k, i in enumerate(missing)}
        store.add(new)
        cached |= new
    rows = torch.stack([cached[h][:views] for h in hashes])
    n_train = len(d.split("train"))
    return EmbeddingSource(
        rows[:n_train],
        torch.as_tensor(d.targets("train")),
        rows[n_train:],
        torch.as_tensor(d.targets("val")),
        t.batch_size,
        t.config.seed,
        t.config.augment,
        t.model.get_classifier(),
        t.device,
    )
