"""What a watcher sees of a run (`RunState`), and how a run ends early (`StopTraining`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class RunState:
    """What a watcher sees of a run. Plain data; `Job.snapshot()` hands out copies."""

    status: str = "starting"  # starting | queued | training | done | stopped | diverged | failed
    message: str = ""
    classes: list[str] = field(default_factory=list)
    epoch: int = 0
    epochs: int = 0
    step: int = 0  # step within the current epoch
    steps_per_epoch: int = 0
    images_per_sec: float = 0.0
    eta_s: float | None = None
    step_losses: list[float] = field(default_factory=list)  # one per optimiser step
    stage: str = ""  # what the run last reported (decoding, embeddings, saving); "" while stepping
    history: list[dict] = field(default_factory=list)  # one row per epoch
    confusion: np.ndarray | None = None  # latest epoch
    per_class: pd.DataFrame | None = None  # latest epoch
    best_epoch: int | None = None  # None until an epoch has been saved; 0 is the fitted head
    best_accuracy: float = 0.0
    run_dir: str = ""
    weights_note: str = ""
    weights_fell_back: bool = False  # random weights although pretrained ones were wanted
    freeze_note: str = ""
    recipe: list[str] = field(default_factory=list)  # how the run is staged, and why
    test: dict | None = None  # the kept model on the test split, scored once at the end
    notes: list[str] = field(default_factory=list)  # things the run did on its own (OOM retries)
    predictions: pd.DataFrame | None = None  # latest epoch: one row per validation image
    reliability: pd.DataFrame | None = None  # latest epoch: calibration bins

    @property
    def has_model(self) -> bool:
        return self.best_epoch is not None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "diverged", "failed")

    def progress_line(self) -> str:
        if self.status in ("starting", "queued") or (
            self.status == "training" and not self.step_losses
        ):
            return self.message or "Starting…"
        if self.finished:
            return self.message
        if self.stage:  # between steps (saving, say): what it does now, in which epoch
            return f"Epoch {self.epoch}/{self.epochs} · {self.message}"
        eta = f", about {duration(self.eta_s)} left" if self.eta_s is not None else ""
        return (
            f"Epoch {self.epoch}/{self.epochs} · step {self.step}/{self.steps_per_epoch} · "
            f"{self.images_per_sec:.1f} images/s{eta}"
        )


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class StopTraining(Exception):
    """Raised inside the loop to end a run early; `status` says why. The best model is kept."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message
