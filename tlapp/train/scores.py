"""What the loop records of the model it trains: each epoch's validation scores and the kept
model's one score on the test split, as pure functions of logits and labels.

    result = epoch_scores(epoch, val_logits, val_targets, dataset, train_loss, lr)
    result["row"]          # the epoch's row of metrics.csv
    test = held_out_score(targets, predicted, num_classes, len(paths), epoch)  # run.json "test"

The loop gathers the logits (one process or several); turning them into numbers is here, so that
the same figures come out whichever way they were gathered.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..data import Dataset


def epoch_scores(
    epoch: int,
    logits: torch.Tensor,
    targets: torch.Tensor,
    dataset: Dataset,
    train_loss: float,
    lr: float | None,
) -> dict:
    """The row of metrics.csv for this epoch, and the confusion matrix behind it."""
    preds = logits.argmax(1).numpy()
    cm = metrics.confusion_matrix(targets.numpy(), preds, len(dataset.classes))
    summary = metrics.summary(cm)
    val_loss = F.cross_entropy(logits, targets).item()
    probabilities = logits.softmax(1).numpy()
    ece, reliability = metrics.calibration(probabilities, targets.numpy())
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_accuracy": summary["accuracy"],
        "val_macro_f1": summary["macro_f1"],
        "val_balanced_accuracy": summary["balanced_accuracy"],
        "val_ece": ece,
        "lr": lr,
        "phase": "head" if epoch == 0 else "fine-tune",
    }
    paths = dataset.split("val")["path"].tolist()
    return {
        "row": row,
        "confusion": cm,
        "per_class": metrics.per_class_table(cm, dataset.classes),
        "predictions": metrics.prediction_table(
            paths, probabilities, targets.numpy(), dataset.classes
        ),
        "reliability": reliability,
    }


def held_out_score(
    targets: np.ndarray, predicted: np.ndarray, num_classes: int, images: int, epoch: int
) -> dict:
    """Accuracy on the `images` test images with its 95% Wilson interval, and macro F1 (named
    so that pytest never takes it for a test)."""
    cm = metrics.confusion_matrix(targets, predicted, num_classes)
    summary, correct = metrics.summary(cm), int(cm.trace())
    low, high = metrics.wilson_interval(correct, images)
    return {
        "images": images,
        "correct": correct,
        "accuracy": summary["accuracy"],
        "accuracy_low": low,  # the 95% Wilson interval
        "accuracy_high": high,
        "macro_f1": summary["macro_f1"],
        "balanced_accuracy": summary["balanced_accuracy"],
        "epoch": epoch,
    }
