"""The training loop: epochs and batches, announced as events to callbacks.

    trainer = Trainer(config, dataset, run_dir, callbacks=[...], stop_event=threading.Event())
    status = trainer.fit()      # "done", "stopped", "diverged" or "failed"

The loop is plain (nanoGPT) and announces what happens as events (fastai): `before_fit`,
`before_epoch`, `after_batch`, `after_epoch`, `after_fit`, and `on_progress`, `on_note`,
`on_resume`. A callback is any object with methods of those names; each gets the Trainer.
Stopping is an exception raised inside the loop (`StopTraining`), not a flag tested everywhere.
What the model is and what trains comes from `recipes`; what it trains on from `features`.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import runs
from ..config import TrainConfig
from ..data import Dataset
from ..freeze import set_train_mode
from . import distributed
from .average import WeightAverage
from .batches import BatchFeed, ImageSource
from .embedder import Embedder
from .hardware import empty_cache, grad_scaler, is_out_of_memory
from .head import fittable, set_linear_head
from .recipes import balances, class_weights, make_optimizer, make_scheduler
from .reuse import fitted_head
from .scores import epoch_scores, held_out_score
from .state import StopTraining


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
        deadline: float | None = None,
    ):
        self.config, self.dataset, self.callbacks = config, dataset, callbacks
        self.run_dir, self.stop_event = run_dir, stop_event
        self.finish_event = finish_event or threading.Event()  # stop after the current epoch
        self.deadline = deadline  # time.monotonic() by which a budgeted run ends; None: none
        self.resume_from, self.start_epoch, self.history = resume_from, 1, []
        self.progress = ("", 0, 0)  # what the run is doing, done of total
        # The model on its device, and how it embeds the images (phase one) or decodes them.
        self.embedder = Embedder.build(config, dataset, self.report)
        e, setup = self.embedder, self.embedder.setup
        self.world, self.device, self.precision = e.world, e.device, e.precision
        self.model, self.weights, self.plan = setup.model, setup.weights, setup.plan
        self.data_cfg, self.head_only = setup.data_cfg, setup.head_only
        self.cuda, self.channels_last = e.cuda, e.channels_last
        self.notes = e.notes  # the run's notes, the embedder's (a BatchNorm estimate) among them
        # Phase one (epoch 0) fits the head on frozen features; fine-tuning epochs follow.
        self.fits_head = self.head_only or (
            config.recipe == "two-phase"
            and fittable(self.model.get_classifier())
            and not self.weights.head_kept  # a trained head continues as it is
        )
        self.start_epoch = 0 if self.fits_head else 1
        self.last_epoch = 0 if self.head_only else config.epochs
        self.head_fit = self.features = None  # phase one's fit, and the embeddings it was fitted on
        self.best_state, self.test_result = None, None  # the kept model; its test-split score
        self.scoring_test = False  # while True, Stop no longer interrupts (see score_test)
        self.scaler = grad_scaler(self.device, self.precision)  # enabled for fp16 only
        # What runs forward: the compiled model on request (CUDA only); `model` is what is saved.
        self.net = torch.compile(self.model) if config.compile and self.cuda else self.model
        self.train_net = self.net  # what updates go through: DDP on several processes
        self.source = None  # built by fit(), so that its progress shows
        self.after_head = self.fits_head or self.weights.head_kept
        self.optimizer = make_optimizer(self.model, config, self.cuda, self.after_head)
        # Fine-tuning a learned backbone under a fitted head, BatchNorm keeps the statistics the
        # head was fitted with: re-estimated from small batches of images unlike ImageNet, they
        # move every feature under the head at once, and the first epochs undo phase one.
        self.norm_still = self.after_head and self.weights.kind != "random"
        # Under those statistics, each epoch's model is the mean of the weights since it began.
        self.averaging = self.norm_still and config.average_weights
        self.average: WeightAverage | None = None  # started as fine-tuning begins
        # Imbalanced classes: rare ones weigh more in the loss, and the kept epoch is the one
        # whose validation recall is best on average over the classes, not the most accurate.
        self.balanced = balances(config, dataset)
        self.class_weights = class_weights(dataset).to(self.device) if self.balanced else None
        self.chosen_on = "val_balanced_accuracy" if self.balanced else "val_accuracy"
        self.set_batch_size(config.batch_size)  # lowered again if memory runs out
        self.epoch, self.step, self.loss = 0, 0, float("nan")
        self.val_logits = self.val_targets = None
        # The kept epoch: its validation accuracy and loss, and the score it was chosen on.
        self.best_epoch, self.best_accuracy, self.best_loss = None, -1.0, math.inf
        self.best_score, self.is_best = -1.0, False
        self.status, self.stop_message = "training", ""

    @property
    def autocast(self):
        return self.embedder.autocast

    def update(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch with the loss the run trains on (class weights, label
        smoothing); returns the loss, unread. Training and the learning-rate finder both step
        here. In fp16 the loss is scaled for the backward pass and a step whose gradients
        overflowed is skipped (the GradScaler); in other precisions the scaler passes through."""
        with self.autocast:
            logits = self.source.forward(self.train_net, inputs)
            loss = F.cross_entropy(
                logits.float(),
                targets,
                weight=self.class_weights,
                label_smoothing=self.config.label_smoothing,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def emit(self, event: str) -> None:
        for callback in self.callbacks:
            handler = getattr(callback, event, None)
            if handler:
                handler(self)

    def report(self, what: str, done: int, total: int) -> None:
        self.progress = (what, done, total)
        self.emit("on_progress")
        if self.stop_event.is_set() and not self.scoring_test:
            raise StopTraining("stopped", "Stopped by the user.")

    def prepare(self) -> None:
        """Decode the images that fine-tuning trains on (head only needs none but its features)."""
        self.source = None if self.head_only else self.embedder.source()
        distributed.shard(self.world, self.source)  # several processes: each feeds its own shard

    # --------------------------------------------------------------- the loop
    def fit(self) -> str:
        """Train every epoch unless stopped; returns the final status."""
        status = "done"
        self.emit("before_fit")
        try:
            self.prepare()
            if self.resume_from:
                self.load_checkpoint(self.resume_from)
            for epoch in range(self.start_epoch, self.last_epoch + 1):
                self.epoch, epoch_start = epoch, time.monotonic()
                self.emit("before_epoch")
                if epoch == 0:
                    self.fit_head()
                else:
                    if self.averaging and self.average is None:  # where fine-tuning begins
                        self.average = WeightAverage(self.model)
                    self.train_epoch_fitting_memory()
                with self.epoch_model():
                    if epoch > 0:
                        self.validate()
                    self.result = self.epoch_metrics()
                    self._track_best(self.result["row"])
                    self.emit("after_epoch")
                self._stop_early_if_due(time.monotonic() - epoch_start)
        except StopTraining as stop:
            status, self.stop_message = stop.status, stop.message
        if status in ("done", "stopped"):
            self.score_test()
        self.status = status
        self.emit("after_fit")
        return status

    @torch.inference_mode()
    def score_test(self) -> None:
        """The kept model scored once on the test split, apart from validation: the best epoch
        was chosen on validation, so that figure is optimistic and this one is not."""
        paths = self.dataset.split("test")["path"].tolist()
        if not paths or self.best_epoch is None:
            return
        features = self.features  # None when phase one ran in an earlier process (resumed)
        if self.best_epoch == 0 and features is not None and len(features.test) == len(paths):
            # Phase one kept: the frozen backbone's test embeddings (cached) and the fitted head.
            fit = self.head_fit
            predicted = F.linear(features.test.float(), fit.weight, fit.bias).argmax(1).numpy()
        else:
            # A stopped run is scored too: Stop ends training, and the kept model's test score
            # is the figure the user needs next (a test split is a small share of the images).
            self.scoring_test = True
            try:
                predicted = self._predict_images("test", paths)
            except StopTraining:
                return
            finally:
                self.scoring_test = False
        targets, classes = self.dataset.targets("test"), len(self.dataset.classes)
        self.test_result = held_out_score(targets, predicted, classes, len(paths), self.best_epoch)

    def _predict_images(self, split: str, paths: list[str]):
        """The kept model's predicted class of each image, decoded for this alone."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        feed = self.embedder.feed(split, paths, self.dataset.targets(split), train=False)
        source = ImageSource(feed, feed, self.data_cfg, self.device, self.channels_last)
        self.model.eval()
        logits = []
        for inputs, _ in source.val_batches():
            with self.autocast:
                logits.append(source.forward(self.net, inputs).float().cpu())
        return torch.cat(logits).argmax(1).numpy()

    def fit_head(self) -> None:
        """Phase one: the classifier fitted to convergence on the frozen backbone's embeddings."""
        self.features = self.embedder.features(self.source)
        f = self.features
        weights = self.class_weights.cpu() if self.class_weights is not None else None
        classes = len(self.dataset.classes)
        self.report("Fitting the head", 0, 1)  # the strength search takes seconds on a CPU
        fit = fitted_head(f, self.config, weights, classes, write=self.world.is_main)
        set_linear_head(self.model.get_classifier(), fit)
        self.report("Fitting the head", 1, 1)
        self.head_fit = fit
        self.val_logits = F.linear(f.val.float(), fit.weight, fit.bias)
        self.val_targets = f.val_targets
        train_logits = F.linear(f.train[:, 0].float(), fit.weight, fit.bias)
        self.seen = len(f.train_targets)
        self.loss_sum = F.cross_entropy(train_logits, f.train_targets).item() * self.seen
        self.notes.append(fit.describe())
        self.emit("on_note")

    @contextmanager
    def epoch_model(self):
        """The model this epoch is validated, chosen and saved as: the weights as trained, or
        their mean since fine-tuning began (train/average.py), swapped in for the block."""
        if self.average is None or self.epoch == 0:
            yield
            return
        self.average.add(self.model)
        with self.average.swapped_in(self.model):
            yield

    def _stop_early_if_due(self, epoch_seconds: float) -> None:
        """After the page closed, when another epoch as long as this one would end past the
        time budget, or when fine-tuning has not beaten the best epoch for `patience` epochs
        (a few hundred images on a CPU should not mean minutes for nothing)."""
        epoch, last = self.epoch, self.last_epoch
        if self.finish_event.is_set() and epoch < last:
            raise StopTraining(
                "stopped", f"The page was closed, so the run stopped after epoch {epoch}."
            )
        # Fine-tuning epochs last about as long as each other; phase one is another matter.
        overrun = self.deadline and time.monotonic() + epoch_seconds > self.deadline
        if overrun and 0 < epoch < last:
            self.notes.append(
                f"Fine-tuning stopped after epoch {epoch} to stay within the time budget: "
                "another epoch would have ended past it."
            )
            self.emit("on_note")
            raise StopTraining("done", "")
        patience = self.config.patience
        if self.fits_head and patience and epoch < last and epoch - self.best_epoch >= patience:
            self.notes.append(
                f"Fine-tuning stopped after epoch {epoch}: validation accuracy had not improved "
                f"on epoch {self.best_epoch} for {patience} epochs."
            )
            self.emit("on_note")
            raise StopTraining("done", "")

    def train_epoch_fitting_memory(self) -> None:
        """Train one epoch; out of memory, halve the batch and train the epoch again."""
        while True:
            try:
                return self.train_epoch()
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
                if not is_out_of_memory(err):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                empty_cache(self.device)
                if self.world.parallel:  # every process must take the same steps
                    raise StopTraining("failed", distributed.OUT_OF_MEMORY_IN_ONE) from None
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
        self.batch_size = self.embedder.batch_size = batch_size
        for feed in (getattr(self.source, "train", None), getattr(self.source, "val", None)):
            if isinstance(feed, BatchFeed):
                feed.batch_size = batch_size
        self.steps_per_epoch = self.world.steps(len(self.dataset.split("train")), batch_size)
        self.scheduler = self._make_scheduler()

    def _make_scheduler(self):
        return make_scheduler(self.optimizer, self.config, self.steps_per_epoch, self.after_head)

    # --------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict:
        """Everything but the weights that a resumed run needs (plain tensors and numbers)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "best": [self.best_epoch, self.best_accuracy, self.best_loss, self.best_score],
            "scaler": self.scaler.state_dict(),  # empty unless fp16
            # Averaging: the weights saved are the mean; training goes on from these.
            **(self._average_state() if self.average and self.average.trained else {}),
        }

    def _average_state(self) -> dict:
        return {"trained": self.average.trained, "averaged": self.average.count}

    def load_checkpoint(self, run_dir: Path) -> None:
        """Continue from the last finished epoch of `run_dir` (model, optimizer, scheduler)."""
        weights, state = runs.read_checkpoint(run_dir, self.device)
        self.model.load_state_dict(weights)
        if self.averaging:  # the weights saved are the mean of those trained, or phase one's
            self.average = WeightAverage(self.model, count=state.get("averaged", 1))
            self.model.load_state_dict(state.get("trained", weights))
        if state["batch_size"] != self.batch_size:
            self.set_batch_size(state["batch_size"])
        self.optimizer.load_state_dict(state["optimizer"])
        # A run extended to more epochs keeps the new schedule over all of them (as timm's
        # train.py does): it is set from the update count, so it goes on from where it is.
        if state["scheduler"].get("t_initial") == self.scheduler.t_initial:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        best = state["best"]  # checkpoints before balanced choosing hold no score: accuracy
        self.best_epoch, self.best_accuracy, self.best_loss = best[:3]
        self.best_score = best[3] if len(best) > 3 else best[1]
        self.start_epoch = state["epoch"] + 1
        self.history = [r for r in runs.read_metrics(run_dir) if r["epoch"] <= state["epoch"]]
        self.emit("on_resume")

    def train_epoch(self) -> None:
        set_train_mode(self.model, self.norm_still)
        if self.train_net is self.net:  # several processes: DDP, built when fine-tuning starts
            self.train_net = distributed.data_parallel(self.world, self.model, self.net)
        updates = (self.epoch - 1) * self.steps_per_epoch
        self.loss_sum, self.seen, self.pending = 0.0, 0, []
        # On a GPU, reading the loss each step would stall it: losses are read in groups.
        sync_every = 25 if self.cuda else 1
        for step, (inputs, targets) in enumerate(self.source.train_batches(self.epoch), start=1):
            self.step = step
            if self.stop_event.is_set():
                raise StopTraining("stopped", "Stopped by the user.")
            loss = self.update(inputs, targets)
            self.scheduler.step_update(updates + step)
            self.pending.append((loss.detach(), len(targets)))
            if step % sync_every == 0 or step == self.steps_per_epoch:
                self._read_losses()
        # Several processes: the same model and loss on each, and each one's shard recorded.
        self.loss_sum, self.seen = distributed.end_epoch(
            self.world, self.model, self.loss_sum, self.seen
        )
        distributed.record_shards(self.world, self.source.train, self.run_dir, self.epoch)

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
        n = len(self.source.val.images)  # several processes: each validated a shard; gathered
        self.val_logits = distributed.gather_rows(self.world, torch.cat(logits), n).cpu()
        self.val_targets = distributed.gather_rows(self.world, torch.cat(targets), n).cpu()

    def _track_best(self, row: dict) -> None:
        """The best epoch scores highest on validation (accuracy, or balanced accuracy when the
        classes are balanced); a lower loss breaks ties."""
        score, loss = row[self.chosen_on], row["val_loss"]
        self.is_best = score > self.best_score or (
            score == self.best_score and loss < self.best_loss
        )
        if self.is_best:
            self.best_epoch, self.best_score, self.best_loss = self.epoch, score, loss
            self.best_accuracy = row["val_accuracy"]
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def epoch_metrics(self) -> dict:
        """The row of metrics.csv for this epoch, and the confusion matrix behind it."""
        return epoch_scores(
            self.epoch,
            self.val_logits,
            self.val_targets,
            self.dataset,
            train_loss=self.loss_sum / max(self.seen, 1),
            lr=max(g["lr"] for g in self.optimizer.param_groups) if self.epoch else None,
        )
