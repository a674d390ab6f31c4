"""Training: a run staged by a recipe, trained by the loop, watched through a job.

    job = Job(make_config(data="photos/", freeze="all")).start()
    job.snapshot()  # RunState

| module | what it holds |
|---|---|
| `recipes` | what a run starts from and how it is staged: model, freeze, optimiser, schedule |
| `loop` | `Trainer`: the epoch/batch loop and its events, out-of-memory retry, checkpoints |
| `scores` | each epoch's validation scores and the kept model's test score, from logits |
| `embedder` | `Embedder`: the model on its device, turning images into (cached) embeddings or batches |
| `features` | the embedding cache on disk, the forward pass that fills it, BatchNorm re-estimation |
| `batches` | decode each image once, augment tensors, uint8 batches normalised on the device |
| `callbacks` | `LiveState` (the snapshot) and `RunWriter` (the run folder) |
| `job` | `Job`: a run in a background thread, with resume; `RunState` snapshots |
| `state` | `RunState`, `StopTraining` |
| `slots` | the queue that shares the machine between jobs |
| `hardware` | device, precision, backend switches, out-of-memory detection |
"""

import importlib
from typing import TYPE_CHECKING

from .state import RunState, StopTraining

if TYPE_CHECKING:
    from .job import Job, resume_config
    from .loop import Trainer

__all__ = ["Job", "RunState", "StopTraining", "Trainer", "resume_config"]

# The job and the loop import torch and timm (seconds): loaded on first use, so that the page,
# which needs only RunState and the slots at first, is served without them.
_LAZY = {"Job": "job", "resume_config": "job", "Trainer": "loop"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
