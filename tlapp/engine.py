"""The training engine: one Job trains one model in a background thread.

    config = make_config(data="photos/", model="resnet18", freeze=3, epochs=5)
    job = Job(config).start()
    while job.running:
        state = job.snapshot()      # a plain RunState copy, safe to read from any thread
        print(state.progress_line())
        time.sleep(1)
    job.stop()                      # ends within a batch; the best model so far is kept

The loop is plain (nanoGPT) and announces what happens as events (fastai): `before_fit`,
`before_epoch`, `after_batch`, `after_epoch`, `after_fit`. Callbacks record the live state and
write the run folder; stopping is an exception raised inside the loop, not a flag tested
everywhere.
This module never imports gradio: the UI and the CLI only start jobs and read snapshots.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import math
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from . import metrics, runs
from .batches import BatchFeed, DecodedImages, ImageSource, cache_side
from .data import DataError, Dataset, load_dataset
from .slots import TrainingSlots
from .embeddings import (
    AUGMENTED_VIEWS,
    POLICY,
    EmbeddingSource,
    EmbeddingStore,
    cache_key,
    default_cache_dir,
    embed,
    file_hash,
    file_hashes,
)
from .models import (
    DEFAULT_MODEL,
    ModelError,
    apply_freeze,
    build_model,
    freeze_plan,
    read_state_dict,
    set_train_mode,
    size_kwargs,
    weights_kind,
)


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs to be reproduced; saved as `config.json` in the run folder."""

    data: str
    model: str = DEFAULT_MODEL
    weights: str = "auto"  # auto | pretrained | none | path to weights or a run folder
    freeze: int | str = 0  # stages frozen from the input; "all" trains only the head
    epochs: int = 5
    img_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    augment: bool = True  # light: random resized crop, horizontal flip, mild colour jitter
    val_fraction: float = 0.2
    seed: int = 0
    out: str = ""  # run folder; empty: a new folder under runs_root
    runs_root: str = "runs"
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the hardware has it) | bf16 | fp32
    feature_cache: bool = True  # head only: run the backbone once per image, cache embeddings
    cache_dir: str = ""  # embedding cache; empty: $TLAPP_CACHE or ~/.cache/tlapp
    memory_budget_gb: float = 4.0  # decoded images kept in memory; the rest decoded on demand
    compile: bool = False  # torch.compile the model on CUDA: slower start, faster long runs
    balance_classes: bool = False  # weight the loss so that rare classes count as much as common
    corrections: str = ""  # a corrections file made from the page (relabelled, left-out images)


def make_config(**values) -> TrainConfig:
    """Build and check a TrainConfig from loose values (widgets, CLI); raises ValueError."""
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"Unknown settings: {', '.join(sorted(unknown))}.")
    clean = {k: v for k, v in values.items() if v is not None}
    for name, cast in (
        ("epochs", int),
        ("img_size", int),
        ("batch_size", int),
        ("warmup_epochs", int),
        ("seed", int),
        ("lr", float),
        ("weight_decay", float),
        ("label_smoothing", float),
        ("val_fraction", float),
    ):
        if name in clean:
            clean[name] = cast(clean[name])
    if isinstance(clean.get("freeze"), float):
        clean["freeze"] = int(clean["freeze"])
    config = TrainConfig(**clean)
    _check_ranges(config)
    return config


def _check_ranges(c: TrainConfig) -> None:
    rules = [
        (c.epochs >= 1, "Epochs must be at least 1."),
        (32 <= c.img_size <= 1024, "Image size must be between 32 and 1024 pixels."),
        (c.batch_size >= 1, "Batch size must be at least 1."),
        (0 < c.lr < 1, "Learning rate must be between 0 and 1 (try 0.001)."),
        (0 < c.val_fraction < 1, "The validation fraction must be between 0 and 1 (try 0.2)."),
        (0 <= c.label_smoothing < 1, "Label smoothing must be between 0 and 1."),
        (c.device in ("auto", "cpu", "cuda"), "Device must be auto, cpu or cuda."),
        (c.precision in ("auto", "bf16", "fp32"), "Precision must be auto, bf16 or fp32."),
        (c.memory_budget_gb >= 0, "The memory budget cannot be negative."),
    ]
    for ok, message in rules:
        if not ok:
            raise ValueError(message)


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("No CUDA GPU is available here: choose device 'cpu' or 'auto'.")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- live state
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
    history: list[dict] = field(default_factory=list)  # one row per epoch
    confusion: np.ndarray | None = None  # latest epoch
    per_class: pd.DataFrame | None = None  # latest epoch
    best_epoch: int = 0
    best_accuracy: float = 0.0
    run_dir: str = ""
    weights_note: str = ""
    freeze_note: str = ""
    notes: list[str] = field(default_factory=list)  # things the run did on its own (OOM retries)
    predictions: pd.DataFrame | None = None  # latest epoch: one row per validation image
    reliability: pd.DataFrame | None = None  # latest epoch: calibration bins

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
        eta = f", about {_duration(self.eta_s)} left" if self.eta_s is not None else ""
        return (
            f"Epoch {self.epoch}/{self.epochs} · step {self.step}/{self.steps_per_epoch} · "
            f"{self.images_per_sec:.1f} images/s{eta}"
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class StopTraining(Exception):
    """Raised inside the loop to end a run early; `status` says why. The best model is kept."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ----------------------------------------------------------------------------- hardware
def cpu_supports_bf16() -> bool:
    """bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 autocast roughly halves step time."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def class_weights(dataset: Dataset) -> torch.Tensor:
    """Inverse-frequency weights over the training split: n / (classes x count)."""
    counts = np.bincount(dataset.targets("train"), minlength=len(dataset.classes)).astype(
        np.float32
    )
    return torch.from_numpy(counts.sum() / (len(counts) * np.maximum(counts, 1)))


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure, which arrives as a RuntimeError."""
    return (
        isinstance(err, (torch.OutOfMemoryError, MemoryError))
        or "can't allocate memory" in str(err)
        or "out of memory" in str(err).lower()
    )


def weights_file_hash(weights: str) -> str:
    """The identity of a weights file or run folder, by content (for the embedding cache)."""
    path = Path(weights)
    return file_hash(str(path / runs.WEIGHTS if path.is_dir() else path))


def resolve_precision(choice: str, device: torch.device) -> str:
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def tune_backends(device: torch.device) -> None:
    """TF32 matmuls and cuDNN autotuning on CUDA: free speed for training."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def data_config(model: torch.nn.Module, img_size: int) -> dict:
    """timm's preprocessing for this model (mean, std, interpolation, crop) at our image size."""
    cfg = resolve_model_data_config(model)
    cfg["input_size"] = (3, img_size, img_size)
    return cfg


# ----------------------------------------------------------------------------- the loop
class Trainer:
    """One training run. `fit()` runs the loop and emits events to its callbacks.

    When every stage is frozen (and `feature_cache` is on) the backbone runs once per image view
    and only the classifier trains, on cached embeddings; otherwise images are decoded once and
    the frozen prefix runs in eval mode with no autograd graph."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset,
        run_dir: Path,
        callbacks: list,
        stop_event: threading.Event,
        finish_event: threading.Event | None = None,
        resume_from: Path | None = None,
    ):
        self.config, self.dataset, self.callbacks = config, dataset, callbacks
        self.run_dir, self.stop_event = run_dir, stop_event
        self.finish_event = finish_event or threading.Event()  # stop after the current epoch
        self.resume_from, self.start_epoch, self.history, self.notes = resume_from, 1, [], []
        self.device = pick_device(config.device)
        tune_backends(self.device)
        torch.manual_seed(config.seed)
        self.model, self.weights_note = build_model(
            config.model, len(dataset.classes), config.weights, config.img_size
        )
        self.plan = freeze_plan(self.model, config.freeze)
        apply_freeze(self.model, self.plan)
        self.data_cfg = data_config(self.model, config.img_size)
        self.cuda = self.device.type == "cuda"
        self.precision = resolve_precision(config.precision, self.device)
        self.channels_last = self.cuda or self.precision == "bf16"
        self.model.to(
            self.device,
            memory_format=torch.channels_last if self.channels_last else torch.contiguous_format,
        )
        self.head_only = (
            config.feature_cache
            and self.plan.depth == len(self.plan.stages)
            and isinstance(self.model.get_classifier(), torch.nn.Module)  # not distilled pairs
        )
        # What runs forward: the compiled model on request (CUDA only); `model` is what is saved.
        self.net = torch.compile(self.model) if config.compile and self.cuda else self.model
        self.source = None  # built by prepare(), inside fit(), so that its progress shows
        self.optimizer = create_optimizer_v2(
            self.model,
            opt="adamw",
            lr=config.lr,
            weight_decay=config.weight_decay,
            **({"fused": True} if self.cuda else {}),
        )
        self.class_weights = (
            class_weights(dataset).to(self.device) if config.balance_classes else None
        )
        self.set_batch_size(config.batch_size)  # lowered again if memory runs out
        self.epoch, self.step, self.loss = 0, 0, float("nan")
        self.val_logits = self.val_targets = None
        self.best_epoch, self.best_accuracy, self.best_loss, self.is_best = 0, -1.0, math.inf, False
        self.status, self.stop_message, self.progress = "training", "", ("", 0, 0)
        self.cache_hits = 0

    @property
    def autocast(self):
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def emit(self, event: str) -> None:
        for callback in self.callbacks:
            handler = getattr(callback, event, None)
            if handler:
                handler(self)

    def report(self, what: str, done: int, total: int) -> None:
        self.progress = (what, done, total)
        self.emit("on_progress")
        if self.stop_event.is_set():
            raise StopTraining("stopped", "Stopped by the user.")

    # --------------------------------------------------------------- preparing the data
    def prepare(self) -> None:
        self.source = self._embedding_source() if self.head_only else self._image_source()

    def _feed(self, split: str, paths: list[str], targets, train: bool) -> BatchFeed:
        side = cache_side(self.config.img_size, self.data_cfg.get("crop_pct"))
        images = DecodedImages.build(
            paths,
            side,
            self.data_cfg.get("interpolation", "bicubic"),
            int(self.config.memory_budget_gb * (1 << 30) * (0.8 if train else 0.2)),
            progress=lambda done, total: self.report(f"Decoding {split} images", done, total),
        )
        return BatchFeed(
            images,
            targets,
            self.config.img_size,
            self.batch_size,
            augment=train and self.config.augment,
            shuffle=train,
            seed=self.config.seed,
            pin=self.cuda,
        )

    def _image_source(self) -> ImageSource:
        d = self.dataset
        train = self._feed("training", d.split("train")["path"].tolist(), d.targets("train"), True)
        val = self._feed("validation", d.split("val")["path"].tolist(), d.targets("val"), False)
        return ImageSource(train, val, self.data_cfg, self.device, self.channels_last)

    def embedding_key(self) -> str:
        cfg = {k: self.data_cfg[k] for k in ("mean", "std", "interpolation", "crop_pct")}
        kind = weights_kind(self.config.weights, self.weights_note)
        if kind == "pretrained":
            weights = self.weights_note  # it names the hub weights
        elif kind == "random":
            weights = f"random seed {self.config.seed}"
        else:
            weights = f"file {weights_file_hash(self.config.weights)}"
        return cache_key(
            model=self.config.model,
            weights=weights,
            img_size=self.config.img_size,
            preprocessing=cfg,
            precision=self.precision,
            timm=timm.__version__,
            views=POLICY if self.config.augment else "plain",
        )

    def _embedding_source(self) -> EmbeddingSource:
        d, views = self.dataset, 1 + (AUGMENTED_VIEWS if self.config.augment else 0)
        store = EmbeddingStore(self.config.cache_dir or default_cache_dir(), self.embedding_key())
        paths = d.split("train")["path"].tolist() + d.split("val")["path"].tolist()
        hashes = file_hashes(paths)
        cached = store.lookup(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in cached]
        self.cache_hits = len(paths) - len(missing)
        if missing:
            targets = np.zeros(len(missing), dtype=np.int64)
            feed = self._feed("new", [paths[i] for i in missing], targets, train=True)
            table = embed(
                self.model,
                feed,
                list(range(len(missing))),
                views,
                self.data_cfg,
                self.device,
                self.autocast,
                self.channels_last,
                progress=lambda done, total: self.report("Computing embeddings", done, total),
            )
            new = {hashes[i]: table[k] for k, i in enumerate(missing)}
            store.add(new)
            cached |= new
        rows = torch.stack([cached[h][:views] for h in hashes])
        n_train = len(d.split("train"))
        return EmbeddingSource(
            rows[:n_train],
            torch.as_tensor(d.targets("train")),
            rows[n_train:],
            torch.as_tensor(d.targets("val")),
            self.batch_size,
            self.config.seed,
            self.config.augment,
            self.model.get_classifier(),
            self.device,
        )

    # --------------------------------------------------------------- the loop
    def fit(self) -> str:
        """Train every epoch unless stopped; returns the final status."""
        status = "done"
        self.emit("before_fit")
        try:
            self.prepare()
            if self.resume_from:
                self.load_checkpoint(self.resume_from)
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                self.epoch = epoch
                self.emit("before_epoch")
                self.train_epoch_fitting_memory()
                self.validate()
                self.result = self.epoch_metrics()
                self._track_best(self.result["row"])
                self.emit("after_epoch")
                if self.finish_event.is_set() and epoch < self.config.epochs:
                    raise StopTraining(
                        "stopped", f"The page was closed, so the run stopped after epoch {epoch}."
                    )
        except StopTraining as stop:
            status, self.stop_message = stop.status, stop.message
        self.status = status
        self.emit("after_fit")
        return status

    def train_epoch_fitting_memory(self) -> None:
        """Train one epoch; out of memory, halve the batch and train the epoch again."""
        while True:
            try:
                return self.train_epoch()
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
                if not is_out_of_memory(err):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                if self.cuda:
                    torch.cuda.empty_cache()
                if self.batch_size == 1:
                    raise StopTraining(
                        "failed",
                        "Out of memory even one image at a time: pick a "
                        "smaller model or image size.",
                    ) from None
                self.set_batch_size(self.batch_size // 2)
                self.notes.append(
                    f"Out of memory in epoch {self.epoch}: the batch size was "
                    f"lowered to {self.batch_size} and the epoch started again."
                )
                self.emit("on_note")

    def set_batch_size(self, batch_size: int) -> None:
        """Batch size, steps per epoch and the schedule, which depends on both."""
        self.batch_size = batch_size
        for feed in (getattr(self.source, "train", None), getattr(self.source, "val", None)):
            if isinstance(feed, BatchFeed):
                feed.batch_size = batch_size
        if isinstance(self.source, EmbeddingSource):
            self.source.batch_size = batch_size
        self.steps_per_epoch = -(-len(self.dataset.split("train")) // batch_size)
        self.scheduler = self._make_scheduler()

    def _make_scheduler(self):
        scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=self.config.epochs,
            warmup_epochs=min(self.config.warmup_epochs, self.config.epochs - 1),
            warmup_lr=self.config.lr / 100,
            min_lr=self.config.lr / 100,
            step_on_epochs=False,
            updates_per_epoch=self.steps_per_epoch,
        )
        return scheduler

    # --------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict:
        """Everything but the weights that a resumed run needs (plain tensors and numbers)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "best": [self.best_epoch, self.best_accuracy, self.best_loss],
        }

    def load_checkpoint(self, run_dir: Path) -> None:
        """Continue from the last finished epoch of `run_dir` (model, optimizer, scheduler)."""
        folder = Path(run_dir) / runs.CHECKPOINT
        if not (folder / runs.LAST_WEIGHTS).exists():
            raise runs.RunError(f"'{run_dir}' has no checkpoint to resume from: no epoch finished.")
        self.model.load_state_dict(read_state_dict(folder / runs.LAST_WEIGHTS))
        state = torch.load(folder / runs.TRAINER_STATE, map_location=self.device, weights_only=True)
        if state["batch_size"] != self.batch_size:
            self.set_batch_size(state["batch_size"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_epoch, self.best_accuracy, self.best_loss = state["best"]
        self.start_epoch = state["epoch"] + 1
        self.history = runs.read_metrics(run_dir)[: state["epoch"]]
        self.emit("on_resume")

    def train_epoch(self) -> None:
        set_train_mode(self.model)
        updates = (self.epoch - 1) * self.steps_per_epoch
        self.loss_sum, self.seen, self.pending = 0.0, 0, []
        # On a GPU, reading the loss each step would stall it: losses are read in groups.
        sync_every = 25 if self.cuda else 1
        for step, (inputs, targets) in enumerate(self.source.train_batches(self.epoch), start=1):
            self.step = step
            if self.stop_event.is_set():
                raise StopTraining("stopped", "Stopped by the user.")
            with self.autocast:
                logits = self.source.forward(self.net, inputs)
                loss = F.cross_entropy(
                    logits.float(),
                    targets,
                    weight=self.class_weights,
                    label_smoothing=self.config.label_smoothing,
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step_update(updates + step)
            self.pending.append((loss.detach(), len(targets)))
            if step % sync_every == 0 or step == self.steps_per_epoch:
                self._read_losses()

    def _read_losses(self) -> None:
        """Turn the pending loss tensors into numbers (one host sync), check them, announce."""
        values = torch.stack([loss for loss, _ in self.pending]).float().cpu().tolist()
        sizes = [n for _, n in self.pending]
        self.pending = []
        if not all(math.isfinite(v) for v in values):
            raise StopTraining(
                "diverged",
                "The loss became infinite or NaN: lower the "
                "learning rate (try a tenth of it) and train again.",
            )
        self.new_losses, self.new_images, self.loss = values, sum(sizes), values[-1]
        self.loss_sum += sum(v * n for v, n in zip(values, sizes))
        self.seen += sum(sizes)
        self.emit("after_batch")

    @torch.inference_mode()
    def validate(self) -> None:
        self.model.eval()
        logits, targets = [], []
        for inputs, target in self.source.val_batches():
            if self.stop_event.is_set():
                raise StopTraining("stopped", "Stopped by the user.")
            with self.autocast:
                logits.append(self.source.forward(self.net, inputs).float())
            targets.append(target)
        self.val_logits = torch.cat(logits).cpu()
        self.val_targets = torch.cat(targets).cpu()

    def _track_best(self, row: dict) -> None:
        """The best epoch is the most accurate on validation; a lower loss breaks ties."""
        acc, loss = row["val_accuracy"], row["val_loss"]
        self.is_best = acc > self.best_accuracy or (
            acc == self.best_accuracy and loss < self.best_loss
        )
        if self.is_best:
            self.best_epoch, self.best_accuracy, self.best_loss = self.epoch, acc, loss

    def epoch_metrics(self) -> dict:
        """The row of metrics.csv for this epoch, and the confusion matrix behind it."""
        preds = self.val_logits.argmax(1).numpy()
        cm = metrics.confusion_matrix(self.val_targets.numpy(), preds, len(self.dataset.classes))
        summary = metrics.summary(cm)
        val_loss = F.cross_entropy(self.val_logits, self.val_targets).item()
        probabilities = self.val_logits.softmax(1).numpy()
        ece, reliability = metrics.calibration(probabilities, self.val_targets.numpy())
        row = {
            "epoch": self.epoch,
            "train_loss": self.loss_sum / max(self.seen, 1),
            "val_loss": val_loss,
            "val_accuracy": summary["accuracy"],
            "val_macro_f1": summary["macro_f1"],
            "val_ece": ece,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        paths = self.dataset.split("val")["path"].tolist()
        return {
            "row": row,
            "confusion": cm,
            "per_class": metrics.per_class_table(cm, self.dataset.classes),
            "predictions": metrics.prediction_table(
                paths, probabilities, self.val_targets.numpy(), self.dataset.classes
            ),
            "reliability": reliability,
        }


# ----------------------------------------------------------------------------- callbacks
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
            s.epochs, s.steps_per_epoch = t.config.epochs, t.steps_per_epoch
            s.weights_note, s.freeze_note = t.weights_note, t.plan.describe()

    def before_epoch(self, t: Trainer) -> None:
        self.epoch_start, self.epoch_images = time.perf_counter(), 0
        if t.epoch == t.start_epoch:  # the ETA counts from here: preparing and resuming excluded
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
            self.state.message = f"{what}: {done}/{total}…"

    def after_batch(self, t: Trainer) -> None:
        now = time.perf_counter()
        self.epoch_images += t.new_images
        done = (t.epoch - t.start_epoch) * t.steps_per_epoch + t.step  # in this session
        remaining = (t.config.epochs - t.epoch + 1) * t.steps_per_epoch - t.step
        with self.lock:
            s = self.state
            s.epoch, s.step = t.epoch, t.step
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
            s.status, s.eta_s = t.status, None
            s.message = finish_message(t)


def finish_message(t: Trainer) -> str:
    kept = (
        f"Best model: epoch {t.best_epoch}, validation accuracy {t.best_accuracy:.1%}, "
        f"saved in {t.run_dir}."
        if t.best_epoch
        else "No epoch finished, so no model was saved."
    )
    if t.status == "done":
        return f"Done. {kept}"
    return f"{t.stop_message} {kept}"


class RunWriter:
    """Writes the run folder: config.json at once, metrics every epoch, weights when best."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.rows = run_dir, []

    def before_fit(self, t: Trainer) -> None:
        self.info = run_info(t)
        runs.write_json(self.run_dir / runs.CONFIG, self.info)

    def after_epoch(self, t: Trainer) -> None:
        self.rows.append(t.result["row"])
        runs.write_csv(self.run_dir / runs.METRICS, pd.DataFrame(self.rows))
        if t.is_best:
            runs.save_weights(
                self.run_dir / runs.WEIGHTS,
                t.model,
                {"arch": t.config.model, "epoch": str(t.epoch)},
            )
            cm = metrics.confusion_frame(t.result["confusion"], t.dataset.classes)
            runs.write_csv(self.run_dir / runs.CONFUSION, cm, index=True)
            runs.write_csv(self.run_dir / runs.PER_CLASS, t.result["per_class"])
            runs.write_csv(self.run_dir / runs.PREDICTIONS, t.result["predictions"])
        runs.save_checkpoint(self.run_dir, t.model, t.checkpoint_state())

    def on_resume(self, t: Trainer) -> None:
        self.rows = [dict(row) for row in t.history]

    def after_fit(self, t: Trainer) -> None:
        self.info.update(
            status=t.status,
            notes=list(t.notes),
            batch_size_used=t.batch_size,
            message=finish_message(t),
            best_epoch=t.best_epoch,
            best_val_accuracy=t.best_accuracy if t.best_epoch else None,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        runs.write_json(self.run_dir / runs.CONFIG, self.info)


def run_info(t: Trainer) -> dict:
    """The content of config.json: the configuration and what it resolved to."""
    cfg = t.data_cfg
    return {
        "arch": t.config.model,
        "classes": list(t.dataset.classes),
        "config": asdict(t.config),
        "weights_used": t.weights_note,
        "pretrained": weights_kind(t.config.weights, t.weights_note) == "pretrained",
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
        "training_path": (
            f"head only on cached embeddings ({POLICY if t.config.augment else 'plain view'})"
            if t.head_only
            else "images decoded once; frozen stages in eval mode, no autograd"
        ),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
        "status": "training",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ----------------------------------------------------------------------------- the job
class Job:
    """A training run in a background thread. Start it, read snapshots, stop it.

    With `slots`, the job waits for its turn on the machine first. `resume=True` continues the
    run in `config.out` from its last finished epoch."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset | None = None,
        slots: TrainingSlots | None = None,
        resume: bool = False,
    ):
        self.config, self.dataset, self.slots, self.resume = config, dataset, slots, resume
        self._state = RunState(epochs=config.epochs, message="Loading the data and the model…")
        self._lock, self._stop, self._finish = (
            threading.Lock(),
            threading.Event(),
            threading.Event(),
        )
        self._thread: threading.Thread | None = None

    def start(self) -> "Job":
        self._thread = threading.Thread(
            target=self._run, name=f"tlapp-train-{self.config.model}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop within a batch (or leave the queue); the best model so far is kept."""
        self._stop.set()

    def finish_epoch_and_stop(self) -> None:
        """What happens when the page is closed: end after the current epoch, saved."""
        self._finish.set()
        if self.snapshot().status in ("queued", "starting"):
            self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunState:
        if self._thread:
            self._thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> RunState:
        with self._lock:
            state = copy.copy(self._state)
            state.step_losses = list(state.step_losses)
            state.history = [dict(row) for row in state.history]
            state.classes, state.notes = list(state.classes), list(state.notes)
        return state  # confusion and per_class are replaced, never mutated, so sharing is safe

    def remaining_seconds(self) -> float | None:
        with self._lock:
            return self._state.eta_s if self._state.status == "training" else None

    def _run(self) -> None:
        if self.slots and not self._wait_for_slot():
            return
        try:
            self._train()
        finally:
            if self.slots:
                self.slots.release(self)

    def _wait_for_slot(self) -> bool:
        def show(place: int, eta: float | None) -> None:
            wait = f", about {_duration(eta)} to wait" if eta is not None else ""
            with self._lock:
                self._state.status = "queued"
                self._state.message = (
                    f"Waiting for the machine: place {place} in the queue{wait}. "
                    "Training starts by itself."
                )

        if self.slots.acquire(self, self._stop, show):
            with self._lock:
                self._state.status, self._state.message = (
                    "starting",
                    "Loading the data and the model…",
                )
            return True
        with self._lock:
            self._state.status, self._state.message = (
                "stopped",
                "Stopped while waiting in the queue.",
            )
        return False

    def _train(self) -> None:
        run_dir = None
        try:
            dataset = self.dataset or load_dataset(
                self.config.data,
                self.config.val_fraction,
                self.config.seed,
                corrections=self.config.corrections or None,
            )
            dataset.check()
            run_dir = self._make_run_dir()
            with self._lock:
                self._state.run_dir = str(run_dir)
            # The run folder is complete before watchers see the run end (a download then
            # has the final config.json).
            callbacks = [RunWriter(run_dir), LiveState(self._state, self._lock)]
            Trainer(
                self.config,
                dataset,
                run_dir,
                callbacks,
                self._stop,
                self._finish,
                resume_from=run_dir if self.resume else None,
            ).fit()
        except (DataError, ModelError, runs.RunError, ValueError) as err:
            self._fail(str(err))
        except OSError as err:
            self._fail(disk_message(err))
        except Exception as err:  # a bug or an unexpected fault: say so, keep the details
            detail = traceback.format_exc()
            if run_dir:
                with contextlib.suppress(OSError):
                    (run_dir / "error.log").write_text(detail, encoding="utf-8")
            self._fail(
                f"Training failed unexpectedly ({type(err).__name__}: {err}). "
                "The details are in error.log in the run folder."
            )

    def _make_run_dir(self) -> Path:
        if self.config.out:
            path = Path(self.config.out)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return runs.new_run_dir(self.config.runs_root, self.config.model)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._state.status, self._state.message, self._state.eta_s = "failed", message, None
            run_dir = self._state.run_dir
        if run_dir and (Path(run_dir) / runs.CONFIG).exists():
            with contextlib.suppress(Exception):  # the message above is what matters
                info = runs.read_config(run_dir)
                info.update(status="failed", message=message)
                runs.write_json(Path(run_dir) / runs.CONFIG, info)


def disk_message(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return (
            "The disk is full, so the run stopped; the best model saved before is intact. "
            "Free some space and resume the run."
        )
    return f"A file could not be written or read ({err.strerror or err}): the run stopped."


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The configuration of an earlier run, to continue it in the same folder."""
    saved = runs.read_config(run_dir)["config"]
    saved.update(out=str(run_dir), **overrides)
    return make_config(**saved)
