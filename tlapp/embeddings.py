"""Head-only training on cached embeddings.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .batches import BatchFeed, epoch_order, to_model_input
from .runs import atomic_write

AUGMENTED_VIEWS = 2
POLICY = f"plain + {AUGMENTED_VIEWS} augmented views (random resized crop, flip, colour jitter)"


def default_cache_dir() -> Path:
    return Path(os.environ.get("TLAPP_CACHE", Path.home() / ".cache" / "tlapp"))


def file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.blake2b(f.read(), digest_size=16).hexdigest()


def file_hashes(paths: list[str]) -> list[str]:
    with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        return list(pool.map(file_hash, paths))


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
