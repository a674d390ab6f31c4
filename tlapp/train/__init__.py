"""Training: a run staged by a recipe, trained by the loop, watched through a job.

    job = Job(make_config(data="photos/", freeze="all")).start()
    job.snapshot()  # RunState

| module | what it holds |
|---|---|
| `recipes` | what a run starts from and how it is staged: model, freeze, optimiser, schedule |
| `loop` | `Trainer`: the epoch/batch loop and its events, out-of-memory retry, checkpoints |
| `features` | what the loop trains on: decoded-image batches, or cached embeddings for head only |
| `batches` | decode each image once, augment tensors, uint8 batches normalised on the device |
| `callbacks` | `LiveState` (the snapshot) and `RunWriter` (the run folder) |
| `job` | `Job`: a run in a background thread, with resume; `RunState` snapshots |
| `state` | `RunState`, `StopTraining` |
| `slots` | the queue that shares the machine between jobs |
| `hardware` | device, precision, backend switches, out-of-memory detection |
"""

from .job import Job, resume_config
from .loop import Trainer
from .state import RunState, StopTraining

__all__ = ["Job", "RunState", "StopTraining", "Trainer", "resume_config"]
