"""A labelled, split dataset from what the user gave, and the fixes made to it on the page.

ds = load_dataset("photos/", val_fraction=0.2, seed=0)
print(ds.report())     # images per class and split
print(ds.skipped)      # files that were not used, with the reason
ds.check()             # raises DataError with a one-line reason if it cannot be trained
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .duplicates import fingerprints, split_groups
from .errors import DataError
from .images import MAX_IMAGE_PIXELS, _probe_all
from .listing import _list_csv, _list_folder
from .uploads import Limits, extract_zip

SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.15  # of each class, held back for the test score when there is no test/


@dataclass
class Corrections:
    """Fixes made from the page: images moved to another class or left out. Kept in a file of
    their own (JSON, paths relative to the data's root), never by touching the images."""

    file: Path
    relabel: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)

    @staticmethod
    def load(file: str | os.PathLike) -> Corrections:
        file = Path(file)
        if not file.exists():
            return Corrections(file)
        data = json.loads(file.read_text(encoding="utf-8"))
        return Corrections(file, dict(data.get("relabel", {})), list(data.get("exclude", [])))

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"relabel": self.relabel, "exclude": self.exclude}, indent=2, ensure_ascii=False
            ),
            encoding="utf-8",
        )
        os.replace(tmp, self.file)

    def move(self, relative: str, label: str) -> None:
        self.relabel[relative] = label
        if relative in self.exclude:
            self.exclude.remove(relative)
        self.save()

    def drop(self, relative: str) -> None:
        self.relabel.pop(relative, None)
        if relative not in self.exclude:
            self.exclude.append(relative)
        self.save()

    def __len__(self) -> int:
        return len(self.relabel) + len(self.exclude)


# ----------------------------------------------------------------------------- dataset
@dataclass
class Dataset:
    """Labelled images with a split, plus everything that was left out and why."""

    samples: pd.DataFrame  # columns: path, label, split, width, height, mode
    classes: list[str]
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    layout: str = ""
    root: str = ""
    empty_classes: list[str] = field(default_factory=list)
    val_fraction: float = 0.2  # the share split off when the data has no val/ folder
    test_fraction: float = 0.0  # the share held back when the data has no test/ folder
    test_note: str = ""  # why no test images were held back, when none could be

    def split(self, name: str) -> pd.DataFrame:
        return self.samples[self.samples["split"] == name].reset_index(drop=True)

    def targets(self, name: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.split(name)["label"].map(index).to_numpy(dtype=np.int64, copy=True)

    def report(self) -> pd.DataFrame:
        """Images per class and split, with a total row."""
        table = (
            pd.crosstab(self.samples["label"], self.samples["split"])
            if len(self.samples)
            else pd.DataFrame()
        )
        table = table.reindex(index=self.classes + self.empty_classes, fill_value=0)
        cols = [s for s in SPLITS if s in table.columns or s != "test"]
        table = table.reindex(columns=cols, fill_value=0)
        table["total"] = table.sum(axis=1)
        table.loc["(all classes)"] = table.sum(axis=0)
        return table.rename_axis("class").reset_index().rename_axis(None, axis=1)

    def problems(self) -> list[str]:
        """Everything that stops training, each a sentence saying what to do."""
        out = []
        for c in self.empty_classes:
            out.append(f"Class '{c}' has no usable images: add images to it or remove the folder.")
        if len(self.classes) < 2:
            found = f"found {len(self.classes)}" + (
                f" ('{self.classes[0]}')" if self.classes else ""
            )
            out.append(
                f"At least 2 classes are needed and {found}: put each class's images "
                "in a subfolder named after the class."
            )
            return out
        train_counts = self.split("train")["label"].value_counts()
        for c in self.classes:
            if train_counts.get(c, 0) == 0:
                out.append(f"Class '{c}' has no training images: add images to train/{c}.")
        if len(self.split("val")) == 0:
            out.append(
                "There are no validation images: give each class at least 2 different images "
                "(copies of one picture stay on one side of the split) or add a val/ folder."
            )
        return out

    def relative(self, path: str) -> str:
        """A sample's path relative to the data's root: how corrections name it."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def corrected(self, corrections: Corrections) -> Dataset:
        """This dataset with the corrections applied; each image keeps its split."""
        if not len(corrections):
            return self
        samples = self.samples.copy()
        relative = samples["path"].map(self.relative)
        dropped = relative.isin(corrections.exclude)
        moved = relative.map(corrections.relabel)
        samples.loc[moved.notna(), "label"] = moved[moved.notna()]
        skipped = pd.concat(
            [
                self.skipped,
                pd.DataFrame({"path": samples.loc[dropped, "path"], "reason": "left out by you"}),
            ],
            ignore_index=True,
        )
        samples = samples[~dropped].reset_index(drop=True)
        return replace(
            self,
            samples=samples,
            skipped=skipped,
            classes=sorted(samples["label"].unique().tolist()),
        )

    def warnings(self) -> list[str]:
        """What does not stop training but deserves a word, each a sentence."""
        out = [self.test_note] if self.test_note else []
        train, val = (
            self.split("train")["label"].value_counts(),
            self.split("val")["label"].value_counts(),
        )
        for c in self.classes:
            if train.get(c, 0) and not val.get(c, 0) and len(val):
                out.append(
                    f"Class '{c}' has too few images to set one aside: it has no validation "
                    "image, so its accuracy cannot be measured. Add images to it."
                )
        return out

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise DataError(problems[0])

    def summary(self) -> str:
        counts = self.samples["split"].value_counts()
        parts = [f"{counts.get(s, 0)} {s}" for s in SPLITS if counts.get(s, 0)]
        return (
            f"{len(self.samples)} images in {len(self.classes)} classes ({', '.join(parts)}); "
            f"{len(self.skipped)} files skipped; layout: {self.layout}."
        )


def load_dataset(
    source: str | os.PathLike,
    val_fraction: float = 0.2,
    seed: int = 0,
    extract_to: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    corrections: str | os.PathLike | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    test_fraction: float = TEST_FRACTION,
) -> Dataset:
    """Scan a folder, a .zip or a .csv into a Dataset. Never raises for individual bad files.
    Data without a test/ folder gets `test_fraction` of each class held back as its test split;
    without a val/ folder, `val_fraction` of each class as validation.
    `progress(what, done, total)` hears of the scanning, hashing and comparing of the images."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"'{source}' does not exist: check the path.")
    unpacked = []
    if source.is_file() and source.suffix.lower() == ".zip":
        # Unpacked beside nothing of the user's: a fresh folder unless the caller gives one.
        target = (
            Path(extract_to)
            if extract_to
            else Path(tempfile.mkdtemp(prefix=f"tlapp-{source.stem}-")) / source.stem
        )
        source, unpacked = extract_zip(source, target, limits)
    if source.is_file() and source.suffix.lower() == ".csv":
        listed, skipped, layout = _list_csv(source), [], "CSV of path,label"
        declared = {label for _, label, _ in listed}
    elif source.is_dir():
        listed, skipped, layout, declared = _list_folder(source)
    else:
        raise DataError(f"'{source.name}' is not a folder, a .zip or a .csv file.")
    if len(listed) > limits.max_files:
        raise DataError(
            f"There are {len(listed):,} images; the limit here is "
            f"{limits.max_files:,}: use a subset."
        )
    dataset = _build(
        listed,
        unpacked + skipped,
        declared,
        layout,
        str(source),
        (val_fraction, test_fraction),
        seed,
        limits.max_pixels,
        progress,
    )
    return dataset.corrected(Corrections.load(corrections)) if corrections else dataset


def config_dataset(config, progress=None) -> Dataset:
    """The dataset a TrainConfig trains on, split and corrected as its settings say."""
    return load_dataset(
        config.data,
        config.val_fraction,
        config.seed,
        corrections=config.corrections or None,
        progress=progress,
        test_fraction=config.test_fraction,
    )


def _build(
    listed: list[tuple[str, str, str | None]],
    skipped: list[tuple[str, str]],
    declared: set[str],
    layout: str,
    root: str,
    shares: tuple[float, float],
    seed: int,
    max_pixels: int = MAX_IMAGE_PIXELS,
    progress=None,
) -> Dataset:
    """Probe every listed file, drop the unreadable ones and assign splits."""
    paths = [p for p, _, _ in listed]
    results = _probe_all(paths, max_pixels, progress)
    rows = []
    for (path, label, split), res in zip(listed, results):
        if isinstance(res, str):
            skipped.append((path, res))
        else:
            rows.append((path, label, split, *res))
    samples = pd.DataFrame(rows, columns=["path", "label", "split", "width", "height", "mode"])
    classes = sorted(samples["label"].unique().tolist())
    samples, test_note = _assign_splits(samples, *shares, seed, progress)
    return Dataset(
        samples=samples,
        classes=classes,
        layout=layout,
        root=root,
        skipped=pd.DataFrame(skipped, columns=["path", "reason"]),
        empty_classes=sorted(c for c in declared if c not in classes),
        val_fraction=shares[0],
        test_fraction=shares[1],
        test_note=test_note,
    )


def _assign_splits(
    samples: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int, progress=None
) -> tuple[pd.DataFrame, str]:
    """Keep the splits the data gives; hold back what it lacks from its training images: first
    a test share (only if every class can spare one), then a validation share. Each is
    stratified, seeded, and keeps copies of one picture (exact or near duplicates) together on
    one side. Returns the samples and, when no test share could be held back, why not."""
    samples = samples.sort_values(["label", "path"]).reset_index(drop=True)
    given = set(samples["split"].dropna())
    samples["split"] = samples["split"].fillna("train")
    wanted_splits = [s for s in ("test", "val") if s not in given]
    note = ""
    if "test" in wanted_splits:
        test_fraction, note = _test_share(samples, test_fraction)
    if not wanted_splits or (wanted_splits == ["test"] and not test_fraction):
        return samples, note
    pool = samples[samples["split"] == "train"]
    group = dict(zip(pool.index, split_groups(fingerprints(pool["path"].tolist(), progress))))
    fractions = {"test": test_fraction, "val": val_fraction}
    for split in wanted_splits:
        if fractions[split]:
            # The validation seed is the one used before test shares existed: same split then.
            salt = f"{seed}" if split == "val" else f"{seed}:test"
            _hold_out(samples, pool, group, split, fractions[split], salt)
    return samples, note


MIN_TEST_IMAGES = 10  # per class: below this a held-back test share says nothing


def _test_share(samples: pd.DataFrame, test_fraction: float) -> tuple[float, str]:
    """The test share to hold back (0 when some class is too small), and why not if not."""
    if not test_fraction:
        return 0.0, ""  # none asked for: nothing to explain
    counts = samples.loc[samples["split"] == "train", "label"].value_counts()
    small = counts[counts < MIN_TEST_IMAGES]
    if len(small):
        label, n = small.idxmin(), int(small.min())
        return 0.0, (
            f"No test images were held back: class '{label}' has only {n} image{'s' * (n != 1)} "
            f"({MIN_TEST_IMAGES} per class are needed to spare some), so no estimate on unseen "
            "images is possible. Add images, add a test/ folder, or use k-fold "
            "('How sure is this accuracy?') for a better estimate than validation alone."
        )
    return test_fraction, ""


def _hold_out(samples, pool, group, split: str, fraction: float, seed: str) -> None:
    """Move about `fraction` of each class of `pool` (still marked train) to `split`, whole
    duplicate groups at a time; every class keeps at least one image to train on."""
    members: dict[int, list[int]] = {}
    for i, g in group.items():
        if samples.at[i, "split"] == "train":
            members.setdefault(g, []).append(i)
    left = samples.loc[pool.index]
    left = left[left["split"] == "train"]
    total = pool["label"].value_counts()
    wanted = {
        label: min(n - 1, max(1, round(total[label] * fraction))) if n > 1 else 0
        for label, n in left["label"].value_counts().items()
    }
    decided: set[int] = set()
    for label, idx in left.groupby("label").groups.items():
        idx = list(idx)
        random.Random(f"{seed}:{label}").shuffle(idx)
        for i in idx:
            if group[i] in decided:
                continue
            decided.add(group[i])
            together = samples.loc[members[group[i]], "label"].value_counts()
            if all(wanted.get(lab, 0) >= n for lab, n in together.items()):
                samples.loc[members[group[i]], "split"] = split
                for lab, n in together.items():
                    wanted[lab] -= n
