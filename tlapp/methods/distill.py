"""Knowledge distillation: a trained run taught to a smaller timm backbone, then quantised.

    report = distill("runs/20261124-101500-resnet50", "mobilenetv4_conv_small", epochs=10)
    report.run        # the student's run folder: Predictor, `tlapp predict`, ONNX export as usual
    report.table      # teacher / student / student int8: size (MB), CPU latency, val accuracy

The teacher is a finished run folder. Its training images (the recorded data, split with the
recorded validation fraction and seed, and corrections) and any unlabelled images are the
student's training set. The teacher sees each image once, in its own evaluation view (no
augmentation); its logits are kept in memory. The student, `timm.create_model(student,
num_classes=K)` with the weights asked for, trains for a fixed number of epochs with the app's
AdamW and cosine schedule (timm's `create_optimizer_v2` and `create_scheduler_v2`, through the
Trainer) on the decoded-image batches of `tlapp.train`, augmented as the teacher's run was, on
Hinton et al.'s loss:

    T² · KL(softmax(teacher / T) ‖ softmax(student / T))             unlabelled images
    alpha · CE(student, label) + (1 − alpha) · T² · KL(...)          labelled images

The best epoch on the validation split is kept; the folder is a normal run folder (run.json
with a `distillation` record: teacher, temperature, alpha, epochs, validation metrics; timm's
config.json; model.safetensors; metrics.csv), without the resume checkpoint.

The table (`measure.compare`) sets teacher, student and the student quantised to int8 side by
side; `measure` says how the int8 file is made and how sizes and latencies are taken.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import runs
from ..config import make_config
from ..data import Dataset
from ..geometry import eval_geometry
from ..models import check_name, load_run
from ..train.batches import BatchFeed, DecodedImages, ImageSource, to_model_input
from ..train.callbacks import Progress, RunWriter
from ..train.loop import Trainer
from .measure import compare
from .teacher import inherited_settings, teacher_dataset, teacher_record, unlabelled_images

REPORT = "distillation.csv"  # the table, kept in the student's run folder


# ----------------------------------------------------------------------------- the loss
def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al.: KL divergence between the softened distributions, scaled by T² (so its
    gradients keep their size whatever T), mixed with cross-entropy on the true label with
    weight `alpha` where there is one (labels of -1 are unlabelled images: KL only)."""
    t = temperature
    kd = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="none",
        log_target=True,
    ).sum(1) * (t * t)
    labelled = labels >= 0
    ce = F.cross_entropy(student, labels.clamp(min=0), reduction="none")
    return torch.where(labelled, alpha * ce + (1 - alpha) * kd, kd).mean()


# ----------------------------------------------------------------------------- the trainer
class DistillTrainer(Trainer):
    """The app's Trainer with the student's batches carrying image indices instead of labels:
    each index finds the teacher's logits and the true label (or none) of its image."""

    def __init__(
        self,
        config,
        dataset,
        run_dir,
        callbacks,
        stop_event,
        teacher_dir,
        extra,
        temperature,
        alpha,
    ):
        self.teacher_dir, self.extra = Path(teacher_dir), list(extra)
        self.temperature, self.alpha = temperature, alpha
        self.train_paths = dataset.split("train")["path"].tolist() + self.extra
        super().__init__(config, dataset, run_dir, callbacks, stop_event)

    def set_batch_size(self, batch_size: int) -> None:
        super().set_batch_size(batch_size)
        self.steps_per_epoch = -(-len(self.train_paths) // batch_size)  # unlabelled included
        self.scheduler = self._make_scheduler()

    def prepare(self) -> None:
        d = self.dataset
        index = np.arange(len(self.train_paths), dtype=np.int64)
        train = self.embedder.feed("training", self.train_paths, index, train=True)
        val = self.embedder.feed(
            "validation", d.split("val")["path"].tolist(), d.targets("val"), False
        )
        self.source = ImageSource(train, val, self.data_cfg, self.device, self.channels_last)
        labels = np.concatenate([d.targets("train"), np.full(len(self.extra), -1)])
        self.labels = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        self.soft = self.teacher_logits(train.images)

    @torch.inference_mode()
    def teacher_logits(self, decoded: DecodedImages) -> torch.Tensor:
        """The teacher's logits for every training image, in its own evaluation view, once."""
        teacher, info = load_run(self.teacher_dir, str(self.device))
        cfg = info["data_config"]
        geometry = eval_geometry(cfg)
        if geometry != decoded.geometry:  # the teacher resizes differently: decode for it
            decoded = DecodedImages.build(
                decoded.paths,
                geometry,
                int(self.config.memory_budget_gb * (1 << 30) * 0.5),
                lambda done, total: self.report("Decoding for the teacher", done, total),
            )
        feed = BatchFeed(
            decoded,
            np.zeros(len(decoded), np.int64),
            geometry.size,
            self.batch_size,
            augment=False,
            shuffle=False,
            seed=0,
        )
        out, done = [], 0
        for pixels, _ in feed.batches():
            x = to_model_input(pixels, cfg["mean"], cfg["std"], self.device)
            with self.autocast:
                out.append(teacher(x).float())
            done += len(pixels)
            self.report("Teacher's logits", done, len(decoded))
        return torch.cat(out) if out else torch.empty(0, len(info["classes"]))

    def update(self, inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """One optimiser step on the distillation loss (the Trainer's step otherwise)."""
        with self.autocast:
            logits = self.source.forward(self.net, inputs)
        loss = distillation_loss(
            logits.float(), self.soft[index], self.labels[index], self.temperature, self.alpha
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss


class _Epochs:
    """Tells `progress` of each finished epoch."""

    def __init__(self, progress):
        self.progress = progress

    def after_epoch(self, t: Trainer) -> None:
        self.progress("Distilling: epochs", t.epoch, t.last_epoch)


# ----------------------------------------------------------------------------- the report
@dataclass
class DistillReport:
    """The student's run folder and the comparison table (teacher / student / student int8)."""

    run: Path
    teacher: Path
    status: str  # the student's training: done, stopped or diverged (a model was kept)
    message: str
    table: pd.DataFrame

    def describe(self) -> str:
        shown = self.table.copy()
        for col in ("size (MB)", "CPU latency (ms)"):
            shown[col] = shown[col].map(lambda v: "—" if pd.isna(v) else f"{v:.2f}")
        shown["val accuracy"] = shown["val accuracy"].map(
            lambda v: "—" if pd.isna(v) else f"{v:.1%}"
        )
        return f"{shown.to_string(index=False)}\n\n{self.message}"


def distill(
    teacher_run: str | os.PathLike,
    student_model: str,
    out: str | os.PathLike | None = None,
    epochs: int = 10,
    temperature: float = 4.0,
    alpha: float = 0.5,
    unlabelled_paths: list[str | os.PathLike] | None = None,
    img_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    stop_event: threading.Event | None = None,
    weights: str = "auto",
    lr: float | None = None,
    batch_size: int | None = None,
    timed_runs: int = 50,
) -> DistillReport:
    """Teach `student_model` the finished run `teacher_run`; write the student's run folder
    (`out`, or a new folder beside the teacher's) and compare the two and the int8 student."""
    _check_loss_settings(temperature, alpha)
    check_name(student_model)
    teacher_dir = Path(teacher_run)
    info = teacher_record(teacher_dir)
    recorded = info.get("config", {})
    with contextlib.ExitStack() as stack:
        dataset = teacher_dataset(recorded, info["classes"], stack)
        extra, left_out = unlabelled_images(unlabelled_paths or [], dataset)
        settings = inherited_settings(recorded)
        size = img_size or recorded.get("img_size") or info["data_config"]["input_size"][-1]
        run_dir, created = _student_folder(out, teacher_dir, student_model)
        asked = {"lr": lr, "batch_size": batch_size}  # what the call sets over the teacher's
        config = make_config(
            **{
                **settings,
                **_student_settings(recorded, student_model, weights, epochs, size, run_dir),
                **{k: v for k, v in asked.items() if v},
            }
        )
        trainer = DistillTrainer(
            config,
            dataset,
            run_dir,
            _callbacks(run_dir, progress),
            stop_event or threading.Event(),
            teacher_dir,
            extra,
            temperature,
            alpha,
        )
        status = trainer.fit()
        _keep_the_student(trainer, run_dir, created)
        _record_distillation(trainer, run_dir, info, epochs, left_out)
        table, note = _compare_and_save(teacher_dir, run_dir, dataset, timed_runs, progress)
    return DistillReport(
        run_dir, teacher_dir, status, _message(trainer, status, run_dir, note), table
    )


def _check_loss_settings(temperature: float, alpha: float) -> None:
    if temperature <= 0:
        raise ValueError("The temperature must be above 0 (try 4).")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha, the weight of the true labels, must be between 0 and 1.")


def _student_settings(
    recorded: dict, student_model: str, weights: str, epochs: int, size: int, run_dir: Path
) -> dict:
    """Where the student's config differs from the teacher's: its model, weights, epochs, image
    size and folder; the teacher's data; nothing frozen, one phase, no label smoothing."""
    return {
        "data": str(recorded.get("data", "")),
        "model": student_model,
        "weights": weights,
        "freeze": 0,
        "recipe": "one-phase",
        "epochs": epochs,
        "img_size": size,
        "label_smoothing": 0.0,
        "out": str(run_dir),
    }


def _student_folder(out, teacher_dir: Path, student_model: str) -> tuple[Path, bool]:
    """`out`, or a new folder beside the teacher's; and whether it was made here (a folder made
    for a student that never finished an epoch is removed again)."""
    run_dir = Path(out) if out else runs.new_run_dir(teacher_dir.parent, student_model)
    created = not out or not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, created


def _callbacks(run_dir: Path, progress) -> list:
    """The run folder's writer, and the caller's progress (steps, then epochs) when given."""
    callbacks: list = [RunWriter(run_dir)]
    if progress:
        callbacks += [Progress(progress), _Epochs(progress)]
    return callbacks


def _keep_the_student(trainer: DistillTrainer, run_dir: Path, created: bool) -> None:
    """Raise when no epoch finished (removing a folder made for nothing); otherwise drop the
    resume checkpoint, since a distillation is not resumed."""
    if trainer.best_epoch is None:
        if created:  # nothing worth keeping
            shutil.rmtree(run_dir, ignore_errors=True)
        raise runs.RunError(
            f"{trainer.stop_message} No epoch finished, so there is no student.".strip()
        )
    shutil.rmtree(run_dir / runs.CHECKPOINT, ignore_errors=True)  # no resume: no checkpoint


def _record_distillation(
    t: DistillTrainer, run_dir: Path, info: dict, epochs: int, left_out: int
) -> None:
    """The student's run.json with its `distillation` record, method and recipe."""
    best = next(r for r in runs.read_metrics(run_dir) if r["epoch"] == t.best_epoch)
    temperature, alpha = t.temperature, t.alpha
    record = {
        "teacher": str(t.teacher_dir.resolve()),
        "teacher_arch": info["arch"],
        "temperature": temperature,
        "alpha": alpha,
        "epochs": epochs,
        "labelled_images": len(t.dataset.split("train")),
        "unlabelled_images": len(t.extra),
        "unlabelled_left_out": left_out,
        "best_epoch": t.best_epoch,
        "val_accuracy": best["val_accuracy"],
        "val_macro_f1": best["val_macro_f1"],
        "val_loss": best["val_loss"],
    }
    saved = runs.read_config(run_dir)
    saved["distillation"] = record
    saved["method"] = f"distilled from {info['arch']} (T {temperature:g}, alpha {alpha:g})"
    saved["recipe"] = [
        f"Distilled from {info['arch']} ({t.teacher_dir.name}) for {epochs} epochs: "
        f"KL divergence to the teacher's logits at temperature {temperature:g} (scaled by "
        f"T²), mixed with cross-entropy on the true labels with weight {alpha:g}."
    ]
    runs.write_config(run_dir, saved)


def _compare_and_save(
    teacher_dir: Path, run_dir: Path, dataset: Dataset, timed_runs: int, progress
) -> tuple[pd.DataFrame, str]:
    """The comparison table, also written to the student's folder (REPORT)."""
    if progress:
        progress("Comparing teacher and student", 0, 1)
    table, note = compare(teacher_dir, run_dir, dataset, timed_runs)
    runs.write_csv(run_dir / REPORT, table)
    if progress:
        progress("Comparing teacher and student", 1, 1)
    return table, note


def _message(trainer: DistillTrainer, status: str, run_dir: Path, note: str) -> str:
    """Where the student is, led by why training ended early or started from random weights."""
    message = f"The student's run folder: {run_dir}. {note}".strip()
    if trainer.weights.fell_back:  # pretrained weights were asked for and could not be had
        message = f"Student: {trainer.weights.note} {message}"
    if status != "done":
        message = f"{trainer.stop_message} {message}"
    return message
