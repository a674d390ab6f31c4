"""Callbacks of the loop: `LiveState` keeps the snapshot watchers read, `RunWriter` writes the
run folder (run.json and timm's config.json at once, metrics every epoch, weights when best, a
checkpoint) and reports it as the stage `SAVING`."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import timm
import torch

from .. import metrics, runs
from ..models import size_kwargs
from .features import POLICY
from .hardware import precision_note
from .loop import Trainer
from .recipes import imbalance
from .state import RunState


class Progress:
    """Passes the Trainer's progress on as `progress(what, done, total)` (for a CLI bar or a
    page's progress), for work that is not a run: a learning-rate sweep, embeddings."""

    def __init__(self, progress):
        self.progress = progress

    def on_progress(self, trainer: Trainer) -> None:
        self.progress(*trainer.progress)


class LiveState:
    """Keeps the RunState that watchers read up to date, under the Job's lock."""

    def __init__(self, state: RunState, lock: threading.Lock):
        self.state, self.lock = state, lock

    def before_fit(self, t: Trainer) -> None:
        self.start = self.epoch_start = time.perf_counter()
        with self.lock:
            s = self.state
            s.status, s.message, s.classes = (
                "training",
                "Preparing the images…",
                list(t.dataset.classes),
            )
            s.epochs, s.steps_per_epoch = t.last_epoch, t.steps_per_epoch
            s.weights_note, s.freeze_note = t.weights.note, t.plan.describe()
            s.recipe = describe_recipe(t)
            s.weights_fell_back = t.weights.fell_back

    def before_epoch(self, t: Trainer) -> None:
        self.epoch_start, self.epoch_images = time.perf_counter(), 0
        if t.epoch <= max(t.start_epoch, 1):  # the ETA counts from the first fine-tuning epoch
            self.start = self.epoch_start

    def on_note(self, t: Trainer) -> None:
        with self.lock:
            self.state.notes = list(t.notes)
            self.state.steps_per_epoch = t.steps_per_epoch  # the batch size may have changed
        self.start = time.perf_counter()  # the epoch starts again: so does the ETA's clock

    def on_resume(self, t: Trainer) -> None:
        with self.lock:
            self.state.steps_per_epoch = t.steps_per_epoch
            self.state.history = [dict(row) for row in t.history]
            self.state.best_epoch, self.state.best_accuracy = t.best_epoch, t.best_accuracy
            self.state.notes = [f"Resumed after epoch {t.start_epoch - 1}."]

    def on_progress(self, t: Trainer) -> None:
        what, done, total = t.progress
        with self.lock:
            self.state.message, self.state.stage = f"{what}: {done}/{total}…", what

    def after_batch(self, t: Trainer) -> None:
        now = time.perf_counter()
        self.epoch_images += t.new_images
        done = (t.epoch - max(t.start_epoch, 1)) * t.steps_per_epoch + t.step  # in this session
        remaining = (t.last_epoch - t.epoch + 1) * t.steps_per_epoch - t.step
        with self.lock:
            s = self.state
            s.epoch, s.step, s.stage = t.epoch, t.step, ""
            s.step_losses.extend(t.new_losses)
            s.images_per_sec = self.epoch_images / max(now - self.epoch_start, 1e-6)
            s.eta_s = (now - self.start) / done * remaining

    def after_epoch(self, t: Trainer) -> None:
        with self.lock:
            s = self.state
            s.history.append(dict(t.result["row"]))
            s.confusion, s.per_class = t.result["confusion"], t.result["per_class"]
            s.predictions, s.reliability = t.result["predictions"], t.result["reliability"]
            s.best_epoch, s.best_accuracy = t.best_epoch, t.best_accuracy

    def after_fit(self, t: Trainer) -> None:
        with self.lock:
            s = self.state
            s.status, s.eta_s, s.test = t.status, None, t.test_result
            s.message = finish_message(t)


def finish_message(t: Trainer) -> str:
    kept = (
        f"Best model: epoch {t.best_epoch}, validation accuracy {t.best_accuracy:.1%}, "
        f"saved in {t.run_dir}."
        if t.best_epoch is not None
        else "No epoch finished, so no model was saved."
    )
    if t.best_epoch == 0 and t.epoch > 0:
        kept = (
            "Fine-tuning did not beat the head fitted in phase one, so the model kept is "
            f"phase one's: validation accuracy {t.best_accuracy:.1%}, saved in {t.run_dir}."
        )
    if t.status == "done" and t.config.head == "prototypes" and t.head_only:
        return (
            "Instant baseline (prototypes, no training): validation accuracy "
            f"{t.best_accuracy:.1%}, saved in {t.run_dir}. A usable model already; press "
            "Train to fit and fine-tune."
        )
    if t.status == "done":
        return f"Done. {kept}"
    return f"{t.stop_message} {kept}"


# The preprocessing the run trained and evaluated with, as timm's config.json records it.
TIMM_DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")

SAVING = "Saving the run"


def save_all(t: Trainer, writes: list) -> None:
    """Call each write, reporting them as the stage SAVING: the weights of a large model and
    its checkpoint take seconds. Not `Trainer.report`, which stops on request: a save that has
    begun is finished, so the run folder stays whole."""
    for done, write in enumerate([*writes, None]):
        t.progress = (SAVING, done, len(writes))
        t.emit("on_progress")
        if write:
            write()


class RunWriter:
    """Writes the run folder: run.json and timm's config.json at once, metrics every epoch,
    weights when best."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.rows = run_dir, []

    def before_fit(self, t: Trainer) -> None:
        self.info = run_info(t)
        runs.write_config(self.run_dir, self.info)
        # timm's config describes the model, not its weights: written once, the folder loads
        # with timm.create_model("local-dir:...") as soon as an epoch saves model.safetensors.
        runs.write_timm_config(
            self.run_dir,
            t.model,
            t.dataset.classes,
            self.info["model_kwargs"],
            {k: t.data_cfg[k] for k in TIMM_DATA_KEYS if k in t.data_cfg},
        )

    def after_epoch(self, t: Trainer) -> None:
        self.rows.append(t.result["row"])
        writes = [lambda: runs.write_csv(self.run_dir / runs.METRICS, pd.DataFrame(self.rows))]
        if t.is_best:
            writes.append(lambda: self.write_best(t))
        if not t.head_only:  # a head-only run is one fit of seconds: nothing to resume
            writes.append(lambda: runs.save_checkpoint(self.run_dir, t.model, t.checkpoint_state()))
        save_all(t, writes)

    def write_best(self, t: Trainer) -> None:
        """The best epoch's weights and tables."""
        runs.save_weights(
            self.run_dir / runs.WEIGHTS, t.model, {"arch": t.config.model, "epoch": str(t.epoch)}
        )
        cm = metrics.confusion_frame(t.result["confusion"], t.dataset.classes)
        runs.write_csv(self.run_dir / runs.CONFUSION, cm, index=True)
        runs.write_csv(self.run_dir / runs.PER_CLASS, t.result["per_class"])
        runs.write_csv(self.run_dir / runs.PREDICTIONS, t.result["predictions"])

    def on_resume(self, t: Trainer) -> None:
        self.rows = [dict(row) for row in t.history]

    def after_fit(self, t: Trainer) -> None:
        self.info.update(
            status=t.status,
            notes=list(t.notes),
            batch_size_used=t.batch_size,
            message=finish_message(t),
            best_epoch=t.best_epoch,
            best_val_accuracy=t.best_accuracy if t.best_epoch is not None else None,
            head_fit=t.head_fit.describe() if t.head_fit else None,
            test=t.test_result,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        runs.write_config(self.run_dir, self.info)


def describe_recipe(t: Trainer) -> list[str]:
    """How the run is staged, one line each, with the reason: shown on the page, saved."""
    views = POLICY
    head = (
        f"Phase one fits the new head to convergence on frozen features ({views}): a convex "
        "problem solved in seconds, so the pretrained features are used as well as they can be "
        "before any of them changes."
    )
    return ([head] if t.fits_head else []) + _staging(t) + _averaging(t) + _balancing(t)


def _averaging(t: Trainer) -> list[str]:
    """Why each fine-tuning epoch is the mean of the weights so far (train/average.py)."""
    if not t.averaging or t.head_only:
        return []
    return [
        "Each fine-tuning epoch is validated, kept and saved as the mean of the weights since "
        "fine-tuning began (training goes on from its own weights): a few epochs on a few "
        "hundred images move the weights by chance as much as by what the images teach, and "
        "the mean keeps most of the gain while losing less when an epoch goes astray."
    ]


def _balancing(t: Trainer) -> list[str]:
    """Why the loss weighs rare classes up and the kept epoch is chosen on balanced accuracy."""
    if not t.balanced:
        return []
    why = (
        f"the largest class has {imbalance(t.dataset):.0f} times the smallest's training images"
        if t.config.balance_classes == "auto"
        else "'Balance classes' is on"
    )
    return [
        f"Rare classes count as much as common ones ({why}): they weigh more in training, and "
        "the kept epoch is the one with the best balanced accuracy on validation (each class's "
        "share found, averaged), not the one right most often."
    ]


def _staging(t: Trainer) -> list[str]:
    """What trains after phase one, and why."""
    if t.head_only:
        return ["Every stage is frozen, so phase one is the whole run."]
    decay = (
        f"learning rates that shrink by {t.config.layer_decay:g} per layer towards the input, "
        "so the most general pretrained layers move least"
    )
    if t.fits_head:
        early = (
            f" It stops after {t.config.patience} epochs without a better one."
            if t.config.patience
            else ""
        )
        return [
            f"Phase two fine-tunes the unfrozen stages for {t.config.epochs} epochs with "
            f"{decay}, and keeps the best epoch: if none beats phase one, phase one's model is "
            f"kept, so on the validation images fine-tuning never makes the result worse (the "
            f"test score, when there is one, says whether that holds on new images).{early}",
        ]
    if t.weights.head_kept:
        return [
            "The earlier run's trained head is kept (same classes), so fine-tuning continues "
            f"from it with {decay}."
        ]
    why = (
        "its classifier is not a single linear layer"
        if t.config.recipe == "two-phase"
        else "the one-phase recipe was chosen"
    )
    return [
        f"Head and unfrozen stages train together from the start with one learning rate ({why})."
    ]


def run_info(t: Trainer) -> dict:
    """The content of run.json: the configuration and what it resolved to."""
    cfg = t.data_cfg
    return {
        "arch": t.config.model,
        "classes": list(t.dataset.classes),
        "config": asdict(t.config),
        "weights_used": t.weights.note,
        "pretrained": t.weights.pretrained,
        "freeze": {
            "depth": t.plan.depth,
            "stages": len(t.plan.stages),
            "frozen_stages": [s.label for s in t.plan.frozen],
            "trainable_params": t.plan.trainable,
            "total_params": t.plan.total,
            "description": t.plan.describe(),
        },
        "model_kwargs": size_kwargs(t.config.model, t.config.img_size),
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "dataset": {
            "source": t.config.data,
            "layout": t.dataset.layout,
            "images": {
                s: int((t.dataset.samples["split"] == s).sum()) for s in ("train", "val", "test")
            },
            "skipped_files": len(t.dataset.skipped),
        },
        "device": str(t.device),
        "precision": t.precision,
        "precision_note": precision_note(t.config.precision, t.device),
        "recipe": describe_recipe(t),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
        "status": "training",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
