"""The teacher's side of a distillation: its run, its data as that run split it, the settings a
student keeps, and the unlabelled images it may also teach.

    info = teacher_record(teacher_dir)                           # run.json; a model is saved
    dataset = teacher_dataset(info["config"], info["classes"], stack)   # an ExitStack
    extra, left_out = unlabelled_images(paths, dataset)          # new readable images only
    settings = inherited_settings(info["config"])                # make_config's shared values

Each raises a sentence for the user (RunError, DataError) when the teacher cannot teach.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .. import runs
from ..data import DataError, Dataset, image_files
from .pseudo import _usable


def teacher_record(teacher_dir: Path) -> dict:
    """The teacher's run.json, once it is known to have a saved model to teach with."""
    info = runs.read_config(teacher_dir)
    if not (teacher_dir / runs.WEIGHTS).is_file():
        raise runs.RunError(f"The run in '{teacher_dir}' has no saved model yet to teach with.")
    return info


# The teacher's settings the student keeps: its data split, augmentation, batch and machine.
INHERITED = (
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


def inherited_settings(recorded: dict) -> dict:
    """The INHERITED settings the teacher's run recorded (a test share of none if it had none)."""
    settings = {k: recorded[k] for k in INHERITED if k in recorded}
    settings.setdefault("test_fraction", 0.0)  # a teacher from before test shares had none
    return settings


def teacher_dataset(recorded: dict, classes: list[str], stack: contextlib.ExitStack) -> Dataset:
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


def unlabelled_images(paths: list, dataset: Dataset) -> tuple[list[str], int]:
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
