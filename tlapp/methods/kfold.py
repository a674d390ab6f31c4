"""How sure is this accuracy? Stratified k-fold cross-validation of the head-only fit.

    cv = cross_validate(config, dataset, folds=5)   # on the frozen backbone's embeddings
    cv.describe()      # 'accuracy 91.2% ± 3.1% (5 folds of 60 images), macro F1 ...'
    cv.per_class       # recall per class: mean and spread across folds

With a small validation set one split says little: a single image moves the accuracy by whole
points. Pooling the labelled images (train and validation; never test) and fitting the head on
k-1 folds, scoring on the k-th, gives k estimates; their mean and spread say how far to trust
the number. The head is the one phase one fits (`fit_linear_head`, or prototypes), so the
estimate is of what the app would train; the backbone stays frozen, so it costs seconds.

Copies of one picture (exact or near duplicates, as the train/val split finds them) stay
together in one fold: a copy in the fitting folds would make its twin in the held fold an image
already seen, and the estimate optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import metrics
from ..config import TrainConfig
from ..data import Dataset
from ..data.duplicates import fingerprints, split_groups
from ..metrics import SMALL, small_validation  # noqa: F401  (re-exported; the page reads metrics)
from ..train.head import fit_linear_head, fit_prototypes, stratified_folds
from .embeddings import frozen_features


@dataclass
class CrossValidation:
    folds: int
    images: int
    accuracy: list[float]  # one per fold
    macro_f1: list[float]
    per_class: pd.DataFrame  # class, recall_mean, recall_std

    def describe(self) -> str:
        acc, f1 = np.array(self.accuracy), np.array(self.macro_f1)
        return (
            f"Accuracy {acc.mean():.1%} ± {acc.std():.1%}, macro F1 {f1.mean():.3f} ± "
            f"{f1.std():.3f} over {self.folds} folds of {self.images} labelled images "
            "(head only on frozen features; ± is the spread across folds)."
        )


def cross_validate(config: TrainConfig, dataset: Dataset, folds: int = 5, progress=None):
    """k-fold estimates for `config`'s backbone and head on every labelled image (train and
    validation; test images take no part), copies of one picture kept in one fold."""
    f = frozen_features(config, dataset, progress)
    x = torch.cat([f.train[:, 0], f.val]).float()
    y = torch.cat([f.train_targets, f.val_targets])
    groups = copy_groups(dataset, progress)
    return cross_validate_features(
        x, y, dataset.classes, folds, config.seed, config.head, groups=groups
    )


def copy_groups(dataset: Dataset, progress=None) -> np.ndarray:
    """A group number per labelled image, in frozen_features' order (train, then validation):
    copies of one picture, exact or near, share one; every other image has its own."""
    paths = dataset.split("train")["path"].tolist() + dataset.split("val")["path"].tolist()
    return np.asarray(split_groups(fingerprints(paths, progress)))


def cross_validate_features(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: list[str],
    folds: int,
    seed=0,
    head="logistic",
    groups: np.ndarray | None = None,
) -> CrossValidation:
    """Stratified k-fold of the head fit on embeddings `x` [n, dim]. `groups` (a number per
    row, as copy_groups gives) keeps each group in one fold; without it every row is its own."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    pictures = _pictures_per_class(y.numpy(), groups, len(classes))
    if folds < 2 or pictures.min() < folds:
        raise ValueError(
            f"{folds}-fold cross-validation needs at least {folds} images in every class, "
            f"copies of one picture counting once (the smallest has {pictures.min()}): use "
            "fewer folds or add images."
        )
    accuracy, macro_f1, recalls = [], [], []
    for train, held in stratified_folds(y.numpy(), folds, seed, groups=groups):
        train, held = torch.as_tensor(train), torch.as_tensor(held)
        if head == "prototypes":
            fit = fit_prototypes(x[train], y[train], len(classes))
        else:
            fit = fit_linear_head(x[train], y[train], len(classes), seed=seed)
        predicted = F.linear(x[held], fit.weight, fit.bias).argmax(1).numpy()
        cm = metrics.confusion_matrix(y[held].numpy(), predicted, len(classes))
        scores = metrics.summary(cm)
        accuracy.append(scores["accuracy"])
        macro_f1.append(scores["macro_f1"])
        recalls.append(metrics.per_class_table(cm, classes)["recall"].to_numpy())
    recalls = np.stack(recalls)
    per_class = pd.DataFrame(
        {"class": classes, "recall_mean": recalls.mean(0), "recall_std": recalls.std(0)}
    )
    return CrossValidation(folds, len(y), accuracy, macro_f1, per_class)


def _pictures_per_class(y: np.ndarray, groups: np.ndarray, classes: int) -> np.ndarray:
    """Distinct pictures of each class: its images, with each group of copies counted once."""
    return np.array([len(np.unique(groups[y == c])) for c in range(classes)])
