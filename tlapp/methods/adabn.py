"""Domain shift: a trained run adapted to new images by re-estimating its BatchNorm statistics
(AdaBN: Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", 2016).

    result = adapt_batchnorm("runs/mine", ["night_photos/"], labelled_target="night_labelled/")
    result.describe()     # 'accuracy on 60 labelled target images: 41.7% → 88.3% ...'
    result.run_dir        # runs/mine-adabn: a run folder like any other (predict, export, push)

A model trained on one kind of image (daylight, one scanner, one camera) normalises every
BatchNorm layer with the statistics of those images. Images from elsewhere (darker, another
colour cast, another sensor) give activations with other means and spreads, and the layers after
misread them. AdaBN keeps every weight and replaces each BatchNorm layer's running mean and
variance by their average over unlabelled images of the new kind, seen with the run's own
evaluation preprocessing. No label is needed; a labelled sample of the new kind, if given, only
measures the accuracy before and after (its images never set the statistics).

The adapted model is saved as a new run folder next to the original: a copy of it (without the
resume checkpoint) with the new model.safetensors and, in run.json, what was done. Its
metrics.csv and tables are the original run's, on the original validation images.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import runs
from ..data import ImageError, image_files, load_dataset, open_image
from ..predict import Predictor
from ..train.features import reestimate_batchnorm
from ..train.reuse import batchnorm_layers

BATCH = 32


@dataclass
class AdaBNResult:
    run_dir: Path  # the adapted run folder
    source_run: Path
    layers: int  # BatchNorm layers re-estimated
    target_images: int  # unlabelled images the statistics were estimated on
    skipped: list[tuple[str, str]]  # (path, reason): target images that could not be read
    labelled_images: int = 0
    accuracy_before: float | None = None  # on the labelled target sample, if one was given
    accuracy_after: float | None = None

    def describe(self) -> str:
        text = (
            f"BatchNorm statistics of {self.layers} layers re-estimated on "
            f"{self.target_images} target images; the adapted model is in '{self.run_dir}'."
        )
        if self.accuracy_before is not None:
            change = (self.accuracy_after - self.accuracy_before) * 100
            text += (
                f" Accuracy on {self.labelled_images} labelled target images: "
                f"{self.accuracy_before:.1%} before, {self.accuracy_after:.1%} after "
                f"({change:+.1f} points)."
            )
        return text


def adapt_batchnorm(
    run_dir,
    target_paths: list,
    labelled_target=None,
    out=None,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> AdaBNResult:
    """Re-estimate every BatchNorm layer of the run on the target images (files or folders),
    save the result as a new run folder (`out`, default `<run>-adabn` beside the run) and, with
    a labelled target sample (a folder of class subfolders), measure accuracy before and after."""
    run_dir = Path(run_dir)
    predictor = Predictor(run_dir, device)
    model, info, classes = predictor.model, predictor.info, predictor.classes
    if not batchnorm_layers(model):
        raise runs.RunError(
            f"'{info['arch']}' has no BatchNorm layers (it normalises each image on its own, as "
            "LayerNorm and GroupNorm do), so there are no statistics for AdaBN to adapt: "
            "fine-tune it on labelled images of the new kind instead."
        )
    paths, skipped = _readable(image_files(list(target_paths)))
    if len(paths) < 2:
        raise runs.RunError(
            "AdaBN needs at least 2 readable target images to estimate statistics from "
            f"(found {len(paths)}); a few hundred estimate them well."
        )
    labelled = _labelled_sample(labelled_target, classes) if labelled_target else None

    before = _accuracy(predictor, *labelled) if labelled else None
    # Batches of even size (never a last one of a single image, which BatchNorm cannot train on).
    chunks = np.array_split(np.arange(len(paths)), -(-len(paths) // BATCH))

    def batches():
        for done, chunk in enumerate(chunks, start=1):
            if progress:
                progress("Estimating BatchNorm statistics on the target images", done, len(chunks))
            yield predictor.batch([paths[i] for i in chunk]).to(predictor.device)

    layers = reestimate_batchnorm(model, batches())
    after = _accuracy(predictor, *labelled) if labelled else None

    result = AdaBNResult(
        _new_run_dir(Path(out) if out else run_dir.parent / f"{run_dir.name}-adabn"),
        run_dir,
        layers,
        len(paths),
        skipped,
        len(labelled[0]) if labelled else 0,
        before,
        after,
    )
    _save(result, model, info, target_paths, labelled_target)
    return result


def _readable(files: list[Path]) -> tuple[list[str], list[tuple[str, str]]]:
    paths, skipped = [], []
    for path in map(str, files):
        try:
            open_image(path, draft_size=64)
            paths.append(path)
        except (ImageError, OSError) as err:
            skipped.append((path, str(err)))
    return paths, skipped


def _labelled_sample(folder, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """(paths, targets) of a folder of class subfolders, in the run's class order."""
    samples = load_dataset(folder).samples
    unknown = sorted(set(samples["label"]) - set(classes))
    if unknown:
        raise runs.RunError(
            f"The labelled target images have classes the run does not know: "
            f"{', '.join(unknown)} (the run's classes: {', '.join(classes)})."
        )
    if not len(samples):
        raise runs.RunError(f"'{folder}' has no labelled images (a folder of class subfolders).")
    index = {c: i for i, c in enumerate(classes)}
    return samples["path"].tolist(), samples["label"].map(index).to_numpy()


def _accuracy(predictor: Predictor, paths: list[str], targets: np.ndarray) -> float:
    predicted = np.concatenate(
        [
            predictor.probabilities(paths[start : start + BATCH]).argmax(1)
            for start in range(0, len(paths), BATCH)
        ]
    )
    return float((predicted == targets).mean())


def _new_run_dir(wanted: Path) -> Path:
    path = wanted
    for i in range(2, 1000):
        if not path.exists():
            return path
        path = wanted.with_name(f"{wanted.name}-{i}")
    raise runs.RunError(f"Could not find a free folder name beside '{wanted}'.")


def _save(result: AdaBNResult, model: torch.nn.Module, info: dict, target, labelled) -> None:
    """The original folder copied (no checkpoint: resuming would undo the adaptation), the
    adapted weights written over its model, and what was done recorded in run.json."""
    out = result.run_dir
    shutil.copytree(
        result.source_run, out, ignore=shutil.ignore_patterns(runs.CHECKPOINT, ".*", "*.onnx")
    )
    runs.save_weights(
        out / runs.WEIGHTS,
        model,
        {"arch": info["arch"], "epoch": str(info.get("best_epoch")), "adapted": "AdaBN"},
    )
    note = (
        f"AdaBN: the BatchNorm statistics of {result.layers} layers were re-estimated on "
        f"{result.target_images} unlabelled target images; every weight is the original run's."
    )
    info["adabn"] = {
        "from_run": str(result.source_run),
        "target": [str(p) for p in target],
        "target_images": result.target_images,
        "skipped_images": len(result.skipped),
        "batchnorm_layers": result.layers,
        "labelled_target": str(labelled) if labelled else None,
        "labelled_images": result.labelled_images,
        "accuracy_before": result.accuracy_before,
        "accuracy_after": result.accuracy_after,
        "metrics_note": "metrics.csv, the tables and the test score are the original run's, "
        "on the original images",
        "adapted": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    info["method"] = f"{runs.method_of(info)} + AdaBN"
    info["notes"] = [*info.get("notes", []), note]
    runs.write_config(out, info)
