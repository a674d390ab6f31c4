"""Embeddings kept on disk, and the pieces of embedding: the backbone's forward pass over a feed
and the BatchNorm re-estimate. `embedder.Embedder` puts them together for a run.

Phase one treats the backbone as a fixed function: it runs once per image view (eval mode,
inference mode) and the head is fitted on what it returned, in well under a second; a second
run on the same images (another learning rate, more epochs) reads the embeddings from disk.

    store = EmbeddingStore(cache_dir, key)
    table = store.lookup(hashes)              # {hash: [views, dim]} for images already cached
    store.add(new_rows)                       # written atomically

The cache lives in `<cache_dir>/<key>/embeddings.safetensors`, one [views, dim] tensor per image
named by the hash of the file's bytes: a changed file gets a new name and is computed again. The
key (`Embedder.key`) covers the model, its weights, the image size, the preprocessing, the
precision and the view policy, so any change there starts a fresh cache.

View policy: the plain evaluation view of every image (timm's resize and crop for the model's
crop mode, as the predictor takes it); augmentation is for the fine-tuning phase.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..runs import atomic_write
from .batches import BatchFeed, to_model_input
from .reuse import batchnorm_layers

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


# ----------------------------------------------------------------------------- features
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
