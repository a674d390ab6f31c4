"""Data health before training: duplicates, leakage, imbalance, tiny images, grey among colour.

    findings = check_health(dataset)     # a table: finding, detail, paths (the images concerned)
    findings = check_health(dataset, progress)  # progress(what, done, total) hears of the work

Duplicates are found by `data.duplicates` (the same bytes, or the same picture re-saved or
resized). A duplicate group that spans train and validation (or test) is leakage: the
validation score then measures memory, not learning. A split the app makes keeps each group on
one side; a split the user gave is reported as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import IMBALANCED
from .data import Dataset
from .data.duplicates import duplicate_groups, fingerprints

TINY = 32  # pixels on the shorter side
COLUMNS = ["finding", "detail", "paths"]


def check_health(dataset: Dataset, progress=None) -> pd.DataFrame:
    """Every finding with a one-line detail and the paths of the images concerned."""
    samples = dataset.samples.reset_index(drop=True)
    if not len(samples):
        return pd.DataFrame(columns=COLUMNS)
    paths = samples["path"].tolist()
    prints = fingerprints(paths, progress)
    exact, near = duplicate_groups(prints)
    grey = prints.grey
    rows = []
    for kind, groups in (("exact duplicates", exact), ("near duplicates", near)):
        for g in groups:
            labels = sorted(set(samples.loc[g, "label"]))
            clash = f"; labelled differently: {', '.join(labels)}" if len(labels) > 1 else ""
            rows.append((kind, f"{len(g)} copies of one picture{clash}", [paths[i] for i in g]))
            if samples.loc[g, "split"].nunique() > 1:
                rows.append(
                    (
                        "leakage",
                        f"the same picture is in {', '.join(sorted(set(samples.loc[g, 'split'])))}: "
                        "validation would reward memory",
                        [paths[i] for i in g],
                    )
                )
    rows += _imbalance(samples)
    small = samples[np.minimum(samples["width"], samples["height"]) < TINY]
    if len(small):
        rows.append(
            (
                "very small images",
                f"{len(small)} images under {TINY} pixels on a side",
                small["path"].tolist(),
            )
        )
    if 0 < grey.sum() < len(grey):
        rows.append(
            (
                "grey among colour",
                f"{int(grey.sum())} greyscale images among "
                f"{int((~grey).sum())} colour ones: is colour part of the label?",
                [p for p, g in zip(paths, grey) if g],
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _imbalance(samples: pd.DataFrame) -> list[tuple]:
    counts = samples[samples["split"] == "train"]["label"].value_counts()
    if len(counts) < 2 or counts.min() * 3 > counts.max():
        return []
    rare, common = counts.idxmin(), counts.idxmax()
    detail = f"'{rare}' has {counts.min()} training images and '{common}' {counts.max()}: "
    if counts.max() >= IMBALANCED * counts.min():
        detail += (
            "training weighs the rare classes up on its own ('Balance classes': auto); more "
            "images of them would help most"
        )
    else:
        detail += "add images to the rare classes, or turn on 'Balance classes'"
    rare_classes = counts[counts * 3 <= counts.max()].index
    return [
        ("class imbalance", detail, samples[samples["label"].isin(rare_classes)]["path"].tolist())
    ]
