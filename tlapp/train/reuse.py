"""Work a run can take from an identical earlier run: BatchNorm statistics estimated on the
same images, and a head fitted to the same embeddings and labels. Each is a pure function of
what its key covers, kept in the embedding cache's folder beside the embeddings it goes with.

    if not load_batchnorm(store, model):          # statistics of these images, if kept
        estimate(...); save_batchnorm(store, model)
    fit = fitted_head(features, config, class_weight, classes)   # reused, or fitted and kept

In a workshop thirty visitors train the sample with the same settings and would compute the
same statistics and the same head thirty times; one visitor's second run on unchanged data
(another number of epochs, say) takes them too. A changed image, label or setting is another key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..runs import atomic_write
from .head import SOLVER, HeadFit, fit_linear_head, fit_prototypes

BATCHNORM = "batchnorm.safetensors"


class Store(Protocol):
    folder: Path  # one cache key's folder (features.EmbeddingStore)


def cache_key(**parts) -> str:
    """A short stable name for everything a cached result depends on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def batchnorm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's BatchNorm layers (1d, 2d, 3d, and timm's subclasses of them)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def batchnorm_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The running statistics of every BatchNorm layer, by their names in the model."""
    layers = {id(m) for m in batchnorm_layers(model)}
    names = {name for name, m in model.named_modules() if id(m) in layers}
    return {
        name: buffer
        for name, buffer in model.named_buffers()
        if name.rpartition(".")[0] in names and buffer is not None
    }


def load_batchnorm(store: Store, model: torch.nn.Module) -> bool:
    """Set the model's BatchNorm statistics from the store; False when none were kept."""
    path = store.folder / BATCHNORM
    buffers = batchnorm_buffers(model)
    try:
        with safe_open(str(path), framework="pt") as f:
            if set(f.keys()) != set(buffers):
                return False
            kept = {name: f.get_tensor(name) for name in buffers}
    except (OSError, ValueError):
        return False
    with torch.no_grad():
        for name, buffer in buffers.items():
            buffer.copy_(kept[name].to(buffer.device, buffer.dtype))
    return True


def save_batchnorm(store: Store, model: torch.nn.Module) -> None:
    store.folder.mkdir(parents=True, exist_ok=True)
    buffers = {k: v.detach().cpu().contiguous() for k, v in batchnorm_buffers(model).items()}
    atomic_write(store.folder / BATCHNORM, lambda tmp: save_file(buffers, tmp))


def head_key(
    store: Store,
    train_hashes: list[str],
    targets: torch.Tensor,
    head: str,
    class_weight: torch.Tensor | None,
    seed: int,
) -> str:
    """Everything a fitted head depends on besides the embeddings' own key (the store's)."""
    return cache_key(
        embeddings=store.folder.name,
        images=train_hashes,  # in training order: the embeddings' rows
        targets=targets.tolist(),
        head=head,
        class_weight=None if class_weight is None else class_weight.tolist(),
        seed=seed,
        solver=SOLVER,
    )


def load_head(store: Store, key: str) -> HeadFit | None:
    path = store.folder / "heads" / f"{key}.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            fields = json.loads(f.metadata()["fit"])
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return HeadFit(weight, bias, **fields, reused=True)


def save_head(store: Store, key: str, fit: HeadFit) -> None:
    folder = store.folder / "heads"
    folder.mkdir(parents=True, exist_ok=True)
    fields = {
        k: getattr(fit, k)
        for k in ("l2", "iterations", "rows", "images", "folds", "seconds", "losses", "how")
    }
    tensors = {"weight": fit.weight.contiguous(), "bias": fit.bias.contiguous()}
    metadata = {"fit": json.dumps(fields)}
    atomic_write(folder / f"{key}.safetensors", lambda tmp: save_file(tensors, tmp, metadata))


def fitted_head(features, config, class_weight, classes: int, write: bool = True) -> HeadFit:
    """Phase one's head for `features` (train.features.Features) under `config`: an identical
    earlier run's when the cache kept one, else fitted now and kept (`write`: this process
    writes the cache; under torchrun only rank 0 does)."""
    f, reuse = features, config.feature_cache
    key = head_key(f.store, f.train_hashes, f.train_targets, config.head, class_weight, config.seed)
    fit = load_head(f.store, key) if reuse else None
    if fit is None:
        if config.head == "prototypes":
            fit = fit_prototypes(f.train, f.train_targets, classes)
        else:
            fit = fit_linear_head(f.train, f.train_targets, classes, class_weight, config.seed)
        if reuse and write:
            save_head(f.store, key, fit)
    return fit
