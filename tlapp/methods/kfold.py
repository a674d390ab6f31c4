"""How sure is this accuracy? Stratified k-fold cross-validation of the head-only fit.

    cv = cross_validate(config, dataset, folds=5)   # on the frozen backbone's embeddings
    cv.describe()      # 'accuracy 91.2% ± 3.1% (5 folds of 60 images), macro F1 ...'
    cv.per_class       # recall per class: mean and spread across folds

With a small validation set one split says little: a single image moves the accuracy by whole
points. Pooling the labelled images (train and validation; never test) and fitting the head on
k-1 folds, scoring on the k-th, gives k estimates; their mean and spread say how far to trust
the number. The head is the one phase one fits (`fit_linear_head`, or prototypes), so the
estimate is of what the app would train; the backbone stays frozen, so it costs seconds.
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
    """k-fold estimates for `config`'s backbone and head on every labelled image."""
    f = frozen_features(config, dataset, progress)
    x = torch.cat([f.train[:, 0], f.val]).float()
    y = torch.cat([f.train_targets, f.val_targets])
    return cross_validate_features(x, y, dataset.classes, folds, config.seed, config.head)


def cross_validate_features(
    x: torch.Tensor, y: torch.Tensor, classes: list[str], folds: int, seed=0, head="logistic"
) -> CrossValidation:
    """Stratified k-fold of the head fit on embeddings `x` [n, dim]."""
    counts = np.bincount(y.numpy(), minlength=len(classes))
    if folds < 2 or counts.min() < folds:
        raise ValueError(
            f"{folds}-fold cross-validation needs at least {folds} images in every class "
            f"(the smallest has {counts.min()}): use fewer folds or add images."
        )
    accuracy, macro_f1, recalls = [], [], []
    for train, held in stratified_folds(y.numpy(), folds, seed):
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
