"""The frozen backbone's embeddings of a dataset, as a head-only run would compute them.

    features = frozen_features(config, dataset)   # train [n, views, dim], val [n, dim], targets

The model, its weights and its preprocessing come from `config` exactly as for training, and the
embedding cache is the same, so a run before or after finds them computed. Nothing is written to
a run folder.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import TrainConfig
from ..data import Dataset
from ..train.callbacks import Progress
from ..train.features import Features, gather_features
from ..train.loop import Trainer


def frozen_features(
    config: TrainConfig,
    dataset: Dataset,
    progress: Callable[[str, int, int], None] | None = None,
    stop_event: threading.Event | None = None,
) -> Features:
    """Every train and val image's embedding; `progress(what, done, total)` hears of the work."""
    dataset.check()
    config = replace(config, freeze="all")
    callbacks = [Progress(progress)] if progress else []
    with tempfile.TemporaryDirectory(prefix="tlapp-embed-") as tmp:
        trainer = Trainer(config, dataset, Path(tmp), callbacks, stop_event or threading.Event())
        trainer.prepare()
        return gather_features(trainer)
