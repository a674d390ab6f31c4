"""Classification metrics as pure functions over label arrays.

cm = confusion_matrix(y_true, y_pred, num_classes)   # rows: true, columns: predicted
table = per_class_table(cm, class_names)             # precision, recall, F1, support
summary(cm)                                          # accuracy and macro F1
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
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "macro_f1": float(table["f1"].mean()) if len(table) else 0.0,
    }


def confusion_frame(cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The matrix as a table: true classes as rows, predicted as columns."""
    return pd.DataFrame(
        cm, index=pd.Index(class_names, name="true \\ predicted"), columns=class_names
    )
