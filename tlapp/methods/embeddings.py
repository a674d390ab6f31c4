"""The frozen backbone's embeddings of a dataset, as a head-only run would compute them.

    features = frozen_features(config, dataset)   # train [n, views, dim], val [n, dim], targets
    features, extra = frozen_features_with(config, dataset, unlabelled_paths)   # extra [m, dim]

The model, its weights and its preprocessing come from `config` exactly as for training, and the
embedding cache is the same, so a run before or after finds them computed. Nothing is written to
a run folder. Images outside the dataset (`frozen_features_with`) go through the same backbone,
BatchNorm statistics and preprocessing; they are not part of the split, and not cached.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import Dataset
from ..train.callbacks import Progress
from ..train.features import Features, embed, gather_features, image_feed
from ..train.loop import Trainer


def frozen_features(
    config: TrainConfig,
    dataset: Dataset,
    progress: Callable[[str, int, int], None] | None = None,
    stop_event: threading.Event | None = None,
) -> Features:
    """Every train and val image's embedding; `progress(what, done, total)` hears of the work."""
    return frozen_features_with(config, dataset, [], progress, stop_event)[0]


def frozen_features_with(
    config: TrainConfig,
    dataset: Dataset,
    paths: list[str],
    progress: Callable[[str, int, int], None] | None = None,
    stop_event: threading.Event | None = None,
) -> tuple[Features, torch.Tensor]:
    """The dataset's embeddings, and [len(paths), dim] ones of other images (the plain view)."""
    dataset.check()
    config = replace(config, freeze="all")
    callbacks = [Progress(progress)] if progress else []
    with tempfile.TemporaryDirectory(prefix="tlapp-embed-") as tmp:
        trainer = Trainer(config, dataset, Path(tmp), callbacks, stop_event or threading.Event())
        trainer.prepare()
        # Random weights: BatchNorm estimated on train. Test images take no part in a method.
        features = gather_features(trainer, with_test=False)
        return features, embed_paths(trainer, [str(p) for p in paths], features.val.shape[-1])


def embed_paths(t: Trainer, paths: list[str], dim: int) -> torch.Tensor:
    """[len(paths), dim] embeddings of images by the Trainer's frozen backbone, as it is now."""
    if not paths:
        return torch.empty(0, dim)
    feed = image_feed(t, "unlabelled", paths, np.zeros(len(paths), np.int64), train=False)
    rows = embed(
        t.model,
        feed,
        list(range(len(paths))),
        1,
        t.data_cfg,
        t.device,
        t.autocast,
        t.channels_last,
        lambda done, total: t.report("Computing embeddings of the other images", done, total),
    )
    return rows[:, 0]
