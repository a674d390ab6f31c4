"""Methods beside fine-tuning: prototypes (no training) and k-fold estimates, each with its
real effect on a constructed case."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COLORS

from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.methods import cross_validate, cross_validate_features
from tlapp.predict import Predictor
from tlapp.train import Job
from tlapp.train.head import fit_prototypes

FAST = dict(model="test_resnet", weights="none", img_size=48, batch_size=8)


def clusters(seed: int, n: int, classes: int = 4, dim: int = 32, spread: float = 1.0):
    """Embeddings around one direction per class (what a pretrained backbone gives), positive
    like ReLU features, with noise `spread`."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(classes, dim, generator=torch.Generator().manual_seed(7)) * 3
    y = torch.arange(n) % classes
    return (centres[y] + spread * torch.rand(n, dim, generator=g)).clamp(min=0), y


def test_prototypes_are_the_nearest_normalised_class_mean():
    x, y = clusters(0, 40)
    xv, yv = clusters(1, 400)
    fit = fit_prototypes(x, y, 4)
    means = torch.stack([F.normalize(x[y == c], dim=1).mean(0) for c in range(4)])
    nearest = (F.normalize(xv, dim=1) @ F.normalize(means, dim=1).T).argmax(1)
    predicted = F.linear(xv, fit.weight, fit.bias).argmax(1)
    assert torch.equal(predicted, nearest)  # the linear head is exactly the cosine rule
    assert (predicted == yv).float().mean() > 0.9  # chance is 0.25
    assert "Prototypes" in fit.describe() and fit.images == 40


def test_a_prototype_run_is_a_usable_model(class_folder, tmp_path):
    config = make_config(
        data=str(class_folder), freeze="all", head="prototypes", out=str(tmp_path / "run"), **FAST
    )
    state = Job(config).start().wait(120)
    assert state.status == "done", state.message
    assert any("Prototypes" in note for note in state.notes)
    predictor = Predictor(tmp_path / "run")
    images = sorted((class_folder / "red").iterdir())[:3]
    assert [row[0][0] for row in map(predictor.top_k, images)] == ["red"] * 3
    assert state.best_accuracy > 1 / len(COLORS)


def test_kfold_spreads_shrink_with_more_data():
    spreads = {}
    for n in (40, 800):
        x, y = clusters(2, n, spread=6.0)  # overlapping: accuracy varies from fold to fold
        cv = cross_validate_features(x, y, list("abcd"), folds=5)
        assert len(cv.accuracy) == 5 and cv.images == n
        spreads[n] = np.std(cv.accuracy)
    assert spreads[800] < spreads[40] / 2


def test_kfold_on_a_dataset_reports_mean_spread_and_recall_per_class(class_folder, tmp_path):
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    cv = cross_validate(config, load_dataset(class_folder), folds=3)
    assert cv.folds == 3 and cv.images == 12 * len(COLORS)
    assert list(cv.per_class["class"]) == sorted(COLORS)
    assert 0 <= min(cv.accuracy) <= max(cv.accuracy) <= 1
    assert "over 3 folds of 36 labelled images" in cv.describe()
    with pytest.raises(ValueError, match="at least 20 images in every class"):
        cross_validate(config, load_dataset(class_folder), folds=20)
