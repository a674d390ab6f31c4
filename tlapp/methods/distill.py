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

Quantisation: dynamic int8 through ONNX Runtime's `quantize_dynamic` (`export_onnx(run,
quantize=True)`, which keeps it only if at least 98% of the validation images keep their top-1
class; otherwise the table says it was refused, and why). This is the one that serves CNNs:
ONNX Runtime quantises the weights of convolutions as well as of linear layers, so a CNN's file
shrinks about four times (`bench/methods.py` reports the sizes), whereas
`torch.ao.quantization.quantize_dynamic` quantises only `nn.Linear` (and recurrent) layers, which
in a CNN is the classifier alone. Dynamic int8 convolutions (ConvInteger) save size, not
necessarily time: on a CPU they can run slower than the float ONNX file, so the int8 row's note
gives the float ONNX latency beside it. Teacher and student latencies are PyTorch's (fp32, eval mode), the
int8 row's ONNX Runtime's, each at batch 1 with the thread count torch is set to: the median of
`timed_runs` calls after a warm-up, preprocessing excluded.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import runs
from ..config import make_config
from ..data import DataError, Dataset, image_files
from ..geometry import eval_geometry
from ..models import check_name, load_run
from ..predict import Predictor
from ..train.batches import BatchFeed, DecodedImages, ImageSource, to_model_input
from ..train.callbacks import Progress, RunWriter
from ..train.features import image_feed
from ..train.loop import Trainer
from .pseudo import _usable

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
        train = image_feed(self, "training", self.train_paths, index, train=True)
        val = image_feed(
            self, "validation", d.split("val")["path"].tolist(), d.targets("val"), False
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
    if temperature <= 0:
        raise ValueError("The temperature must be above 0 (try 4).")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha, the weight of the true labels, must be between 0 and 1.")
    check_name(student_model)
    teacher_dir = Path(teacher_run)
    info = runs.read_config(teacher_dir)
    if not (teacher_dir / runs.WEIGHTS).is_file():
        raise runs.RunError(f"The run in '{teacher_dir}' has no saved model yet to teach with.")
    recorded = info.get("config", {})
    with contextlib.ExitStack() as stack:
        dataset = _teacher_dataset(recorded, info["classes"], stack)
        extra, left_out = _unlabelled(unlabelled_paths or [], dataset)
        settings = {
            k: recorded[k]
            for k in (
                "batch_size",
                "augment",
                "val_fraction",
                "test_fraction",
                "seed",
                "device",
                "precision",
                "memory_budget_gb",
                "corrections",
                "runs_root",
            )
            if k in recorded
        }
        settings.setdefault("test_fraction", 0.0)  # a teacher from before test shares had none
        size = img_size or recorded.get("img_size") or info["data_config"]["input_size"][-1]
        run_dir = Path(out) if out else runs.new_run_dir(teacher_dir.parent, student_model)
        created = not out or not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        config = make_config(
            **settings,
            data=str(recorded.get("data", "")),
            model=student_model,
            weights=weights,
            freeze=0,
            recipe="one-phase",
            epochs=epochs,
            img_size=size,
            label_smoothing=0.0,
            out=str(run_dir),
            **({"lr": lr} if lr else {}),
            **({"batch_size": batch_size} if batch_size else {}),
        )
        callbacks: list = [RunWriter(run_dir)]
        if progress:
            callbacks += [Progress(progress), _Epochs(progress)]
        trainer = DistillTrainer(
            config,
            dataset,
            run_dir,
            callbacks,
            stop_event or threading.Event(),
            teacher_dir,
            extra,
            temperature,
            alpha,
        )
        status = trainer.fit()
        if trainer.best_epoch is None:
            if created:  # nothing worth keeping
                shutil.rmtree(run_dir, ignore_errors=True)
            raise runs.RunError(
                f"{trainer.stop_message} No epoch finished, so there is no student.".strip()
            )
        shutil.rmtree(run_dir / runs.CHECKPOINT, ignore_errors=True)  # no resume: no checkpoint
        best = next(r for r in runs.read_metrics(run_dir) if r["epoch"] == trainer.best_epoch)
        record = {
            "teacher": str(teacher_dir.resolve()),
            "teacher_arch": info["arch"],
            "temperature": temperature,
            "alpha": alpha,
            "epochs": epochs,
            "labelled_images": len(dataset.split("train")),
            "unlabelled_images": len(extra),
            "unlabelled_left_out": left_out,
            "best_epoch": trainer.best_epoch,
            "val_accuracy": best["val_accuracy"],
            "val_macro_f1": best["val_macro_f1"],
            "val_loss": best["val_loss"],
        }
        saved = runs.read_config(run_dir)
        saved["distillation"] = record
        saved["method"] = f"distilled from {info['arch']} (T {temperature:g}, alpha {alpha:g})"
        saved["recipe"] = [
            f"Distilled from {info['arch']} ({teacher_dir.name}) for {epochs} epochs: "
            f"KL divergence to the teacher's logits at temperature {temperature:g} (scaled by "
            f"T²), mixed with cross-entropy on the true labels with weight {alpha:g}."
        ]
        runs.write_config(run_dir, saved)
        if progress:
            progress("Comparing teacher and student", 0, 1)
        table, note = compare(teacher_dir, run_dir, dataset, timed_runs)
        runs.write_csv(run_dir / REPORT, table)
        if progress:
            progress("Comparing teacher and student", 1, 1)
    message = f"The student's run folder: {run_dir}. {note}".strip()
    if trainer.weights.fell_back:  # pretrained weights were asked for and could not be had
        message = f"Student: {trainer.weights.note} {message}"
    if status != "done":
        message = f"{trainer.stop_message} {message}"
    return DistillReport(run_dir, teacher_dir, status, message, table)


def _teacher_dataset(recorded: dict, classes: list[str], stack: contextlib.ExitStack) -> Dataset:
    """The teacher's data as its run split it (recorded path, validation fraction, seed)."""
    try:
        dataset = runs.recorded_dataset(recorded, stack)
    except FileNotFoundError:
        raise runs.RunError(
            f"The teacher's training images are no longer at '{recorded.get('data', '')}': "
            "the student learns from them, so put them back first."
        ) from None
    dataset.check()
    if dataset.classes != list(classes):
        raise runs.RunError(
            "The teacher's data no longer has the classes it was trained on "
            f"({', '.join(classes)}; now {', '.join(dataset.classes)})."
        )
    return dataset


def _unlabelled(paths: list, dataset: Dataset) -> tuple[list[str], int]:
    """Readable unlabelled images that are not copies of the dataset's own (a validation image
    taught by the teacher would make the validation score optimistic), as self-training keeps."""
    if not paths:
        return [], 0
    files = [str(p) for p in image_files(paths)]
    kept, skipped = _usable(dataset, files)
    if not kept:
        raise DataError(
            f"None of the {len(files)} unlabelled files is a new readable image (copies of the "
            "dataset's own images are left out)."
        )
    return kept, len(skipped)


# ----------------------------------------------------------------------------- measuring
def compare(
    teacher_dir: Path, student_dir: Path, dataset: Dataset, timed_runs: int = 50
) -> tuple[pd.DataFrame, str]:
    """The three rows: file size, CPU latency at batch 1 and validation accuracy, each model
    through its own predictor (timm's evaluation transform) on the validation split."""
    from ..export.onnx import INT8_FILE, OnnxPredictor, export_onnx

    val = dataset.split("val")
    paths, targets = val["path"].tolist(), dataset.targets("val")
    rows = []
    for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
        predictor = Predictor(folder)
        rows.append(
            {
                "model": name,
                "architecture": predictor.info["arch"],
                "file": runs.WEIGHTS,
                "size (MB)": (folder / runs.WEIGHTS).stat().st_size / 1e6,
                "CPU latency (ms)": latency_ms(predictor, paths[0], timed_runs),
                "val accuracy": accuracy(predictor, paths, targets),
                "note": "PyTorch, fp32",
            }
        )
    int8 = {"model": "student int8", "architecture": rows[1]["architecture"], "file": INT8_FILE}
    try:
        exported = export_onnx(student_dir, quantize=True)
    except (ValueError, runs.RunError) as err:  # RunError is a ValueError too
        rows.append({**int8, "note": f"refused: {err}"})
        note = f"The int8 model was refused: {err}"
    else:
        predictor = OnnxPredictor(student_dir, int8=True)
        float_ms = latency_ms(OnnxPredictor(student_dir), paths[0], timed_runs)
        rows.append(
            {
                **int8,
                "size (MB)": exported.int8.size_bytes / 1e6,
                "CPU latency (ms)": latency_ms(predictor, paths[0], timed_runs),
                "val accuracy": accuracy(predictor, paths, targets),
                "note": f"ONNX Runtime, dynamic int8: top-1 agreement with the student "
                f"{exported.int8.agreement:.1%}; the float {exported.path.name} takes "
                f"{float_ms:.2f} ms there",
            }
        )
        note = f"ONNX files: {exported.path.name}, {exported.int8.path.name}."
    table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "architecture",
            "file",
            "size (MB)",
            "CPU latency (ms)",
            "val accuracy",
            "note",
        ],
    )
    return table, note


def accuracy(predictor, paths: list[str], targets: np.ndarray, batch: int = 32) -> float:
    """Top-1 accuracy of a Predictor (or OnnxPredictor) on labelled image files."""
    if not paths:
        return math.nan
    predicted = np.concatenate(
        [
            predictor.probabilities(paths[i : i + batch]).argmax(1)
            for i in range(0, len(paths), batch)
        ]
    )
    return float((predicted == np.asarray(targets)).mean())


def latency_ms(predictor, image: str, timed_runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of one image's forward pass (batch 1, preprocessing excluded), with
    torch's thread count (ONNX Runtime is given the same)."""
    x = predictor.batch([image])
    session = getattr(predictor, "session", None)
    if session is not None:
        import onnxruntime as ort

        from ..export.onnx import INPUT, OUTPUT

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            str(predictor.path), options, providers=["CPUExecutionProvider"]
        )
        feed = {INPUT: x.numpy()}
        run = lambda: session.run([OUTPUT], feed)  # noqa: E731
    else:
        model = predictor.model

        def run():
            with torch.inference_mode():
                model(x)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, timed_runs)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
