"""The hand-written metrics agree with scikit-learn's, which is why they stay hand-written."""

import numpy as np
import pytest
from sklearn import metrics as sk

from tlapp import metrics


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = 5
    y_true = rng.integers(0, classes, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, classes, 200))
    y_pred[y_pred == 4] = 3  # a class never predicted: precision 0, as scikit-learn's zero_division
    cm = metrics.confusion_matrix(y_true, y_pred, classes)
    assert np.array_equal(cm, sk.confusion_matrix(y_true, y_pred, labels=range(classes)))
    table = metrics.per_class_table(cm, [str(c) for c in range(classes)])
    p, r, f, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=range(classes), zero_division=0
    )
    assert np.allclose(table["precision"], p) and np.allclose(table["recall"], r)
    assert np.allclose(table["f1"], f) and np.array_equal(table["support"], support)
    summary = metrics.summary(cm)
    assert summary["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert summary["macro_f1"] == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=range(classes), average="macro", zero_division=0)
    )
    assert summary["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
