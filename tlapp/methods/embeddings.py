"""The frozen backbone's embeddings of a dataset, as a head-only run would compute them.

    features = frozen_features(config, dataset)   # train [n, views, dim], val [n, dim], targets
    features, extra = frozen_features_with(config, dataset, unlabelled_paths)   # extra [m, dim]

The model, its weights and its preprocessing come from `config` exactly as for training, and the
embedding cache is the same, so a run before or after finds them computed. Nothing is written to
a run folder. Images outside the dataset (`frozen_features_with`) go through the same backbone,
BatchNorm statistics and preprocessing; they are not part of the split, and not cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import torch

from ..config import TrainConfig
from ..data import Dataset
from ..train.embedder import Embedder
from ..train.features import Features
from ..train.state import StopTraining


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
    stop = stop_event or threading.Event()

    def report(what: str, done: int, total: int) -> None:
        if progress:
            progress(what, done, total)
        if stop.is_set():
            raise StopTraining("stopped", "Stopped by the user.")

    embedder = Embedder.build(replace(config, freeze="all"), dataset, report)
    # Random weights: BatchNorm estimated on train. Test images take no part in a method.
    features = embedder.features(with_test=False)
    return features, embedder.embed_paths([str(p) for p in paths], features.val.shape[-1])
