"""Classification metrics as pure functions over label arrays.

cm = confusion_matrix(y_true, y_pred, num_classes)   # rows: true, columns: predicted
table = per_class_table(cm, class_names)             # precision, recall, F1, support
summary(cm)                                          # accuracy and macro F1
wilson_interval(47, 50)                              # 95% interval of an accuracy
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den is 0 (a class never predicted has precision 0)."""
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def per_class_table(cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    tp = np.diag(cm).astype(np.float64)
    precision = _ratio(tp, cm.sum(axis=0))
    recall = _ratio(tp, cm.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return pd.DataFrame(
        {
            "class": class_names,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": cm.sum(axis=1).astype(int),
        }
    )


def summary(cm: np.ndarray) -> dict[str, float]:
    total = cm.sum()
    table = per_class_table(cm, [str(i) for i in range(len(cm))])
    present = table["support"] > 0  # as scikit-learn's balanced_accuracy_score: seen classes
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "macro_f1": float(table["f1"].mean()) if len(table) else 0.0,
        # The mean of each class's recall: a rare class counts as much as a common one.
        "balanced_accuracy": float(table["recall"][present].mean()) if present.any() else 0.0,
    }


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for z=1.96): unlike the normal
    approximation it stays inside [0, 1] and is honest for few images or accuracies near 100%."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    low = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends, not 1 - 1e-16
    high = 1.0 if correct == total else min(1.0, centre + half)
    return float(low), float(high)


SMALL = 30  # validation images per class under which one split says little


def small_validation(dataset) -> bool:
    """Whether some class of a Dataset has fewer than SMALL validation images: k-fold
    cross-validation (`tlapp.methods.kfold`) then says more than the split."""
    counts = dataset.split("val")["label"].value_counts()
    return any(counts.get(c, 0) < SMALL for c in dataset.classes)


def confusion_frame(cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The matrix as a table: true classes as rows, predicted as columns."""
    return pd.DataFrame(
        cm, index=pd.Index(class_names, name="true \\ predicted"), columns=class_names
    )


def calibration(
    probabilities: np.ndarray, targets: np.ndarray, bins: int = 10
) -> tuple[float, pd.DataFrame]:
    """Expected calibration error and the reliability table (per confidence bin: mean
    confidence, accuracy, count). ECE is the count-weighted gap between the two."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "bin_low": edges[b],
                    "bin_high": edges[b + 1],
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    table = pd.DataFrame(rows, columns=["bin_low", "bin_high", "confidence", "accuracy", "count"])
    total = max(len(targets), 1)
    ece = float((table["count"] * (table["confidence"] - table["accuracy"]).abs()).sum() / total)
    return ece, table


def prediction_table(
    paths: list[str], probabilities: np.ndarray, targets: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    """One row per image: true and predicted class, the confidence, and the image's loss."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    predicted = probabilities.argmax(axis=1)
    true_prob = probabilities[np.arange(len(targets)), targets]
    return pd.DataFrame(
        {
            "path": paths,
            "true": [class_names[t] for t in targets],
            "predicted": [class_names[p] for p in predicted],
            "confidence": probabilities.max(axis=1),
            "true_probability": true_prob,
            "loss": -np.log(np.clip(true_prob, 1e-12, None)),
        }
    )
