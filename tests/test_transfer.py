"""Transfer that keeps what pretraining learned: a neutral new head, a converged head-only fit,
and a two-phase recipe whose result is never worse than its first phase."""

import math
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tlapp import runs
from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.models import CATALOG, build_model
from tlapp.train import Job, Trainer
from tlapp.train.callbacks import RunWriter
from tlapp.train.head import (
    DEFAULT_L2,
    SELECTION_IMAGES,
    _folds,
    fit_linear_head,
    stratified_folds,
)

FAMILIES = [
    "test_resnet",
    "test_efficientnet",
    "test_convnext",
    "test_vit",
    "mobilenetv3_small_050",
]


@pytest.mark.parametrize("name", FAMILIES + list(CATALOG))
def test_the_new_head_is_neutral_so_the_first_loss_is_ln_k(name):
    classes = 3
    model, _ = build_model(name, classes, "none", img_size=64)
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.randn(4, 3, 64, 64))
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).item()
    assert abs(loss - math.log(classes)) < 0.05, (name, loss)


def gaussian_embeddings(seed: int, n: int, classes: int = 5, dim: int = 64):
    """A fixed, overlapping mixture: linear but not separable, so regularisation matters."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 0.6
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, dim, generator=g) + 3.0  # offset: features are not centred
    return x, y


def test_the_head_fit_matches_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = gaussian_embeddings(0, 400)
    xv, yv = gaussian_embeddings(1, 1000)
    fit = fit_linear_head(x, y, 5)
    ours = ((xv @ fit.weight.T + fit.bias).argmax(1) == yv).float().mean().item()
    theirs = LogisticRegression(max_iter=5000).fit(x.numpy(), y.numpy()).score(xv, yv)
    assert ours > 0.5  # far above chance (0.2): the problem is learnable
    assert abs(ours - theirs) <= 0.01, (ours, theirs)
    assert fit.l2 > 0 and fit.folds == 3 and "L-BFGS" in fit.describe()


def test_augmented_views_are_extra_rows_and_a_tiny_set_still_fits():
    x, y = gaussian_embeddings(2, 30)
    views = torch.stack([x, x + 0.1, x - 0.1], dim=1)  # [images, views, dim]
    fit = fit_linear_head(views, y, 5)
    assert fit.rows == 90 and fit.images == 30 and "30 images × 3 views" in fit.describe()
    few = fit_linear_head(x[:10], y[:10], 5)  # two per class: nothing to hold out
    assert few.folds == 0 and torch.isfinite(few.weight).all()


def test_the_head_fit_says_whether_its_weight_decay_was_chosen_or_the_default():
    x, y = gaussian_embeddings(3, 30)  # six images per class: three folds to choose on
    chosen = fit_linear_head(x, y, 5).describe()
    assert "chosen on 3-fold splits of the training images" in chosen and "default" not in chosen
    few = fit_linear_head(x[:10], y[:10], 5)  # two per class: no fold can hold one out
    said = few.describe()
    assert f"weight decay {DEFAULT_L2:g} (the default: too few images per class" in said
    assert "chosen" not in said
    large = SELECTION_IMAGES + 500  # one held-out share of a stratified sample
    big = fit_linear_head(*gaussian_embeddings(4, large, dim=8), 5)
    assert big.folds == 1 and "chosen on held-out training images" in big.describe()


@pytest.mark.parametrize("k", [3, 5])
def test_stratified_folds_partition_the_images_and_keep_class_shares_like_scikit_learn(k):
    from sklearn.model_selection import StratifiedKFold

    y = np.repeat([0, 1, 2, 3], [40, 17, 9, 25])
    folds = stratified_folds(y, k, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(y)))  # every image held out exactly once
    theirs = StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(y)), y)
    for (train, held), (_, their_held) in zip(folds, theirs):
        assert set(train).isdisjoint(held) and len(train) + len(held) == len(y)
        ours = np.bincount(y[held], minlength=4)
        assert (abs(ours - np.bincount(y[their_held], minlength=4)) <= 1).all()  # shares
        assert abs(len(held) - len(y) / k) <= 1  # sizes
    assert stratified_folds(y, k, seed=1)[0][1].tolist() != folds[0][1].tolist()  # seeded


def test_a_large_set_chooses_its_strength_on_a_stratified_sample():
    y = np.repeat([0, 1, 2], [6000, 3000, 1000])
    ((train, held),) = _folds(y, seed=0)
    assert set(train).isdisjoint(held)
    assert abs(len(train) + len(held) - SELECTION_IMAGES) <= 3
    assert np.bincount(y[held]).tolist() == [240, 120, 40]  # a fifth, in the classes' shares


FAST = dict(model="test_resnet", weights="none", img_size=48, batch_size=8, precision="fp32")


def run(folder, tmp_path, **overrides):
    config = make_config(
        data=str(folder),
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        **{**FAST, **overrides},
    )
    return Job(config).start().wait(timeout=240)


def test_head_only_is_one_fitted_head_and_ignores_epochs(class_folder, tmp_path):
    state = run(class_folder, tmp_path, freeze="all", epochs=7)
    assert state.status == "done" and state.best_epoch == 0
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["epoch"].tolist() == [0] and metrics["phase"].tolist() == ["head"]
    info = runs.read_config(tmp_path / "run")
    assert "L-BFGS" in info["head_fit"] and "phase one is the whole run" in " ".join(info["recipe"])


def test_two_phase_fits_the_head_first_then_fine_tunes_with_layer_decay(class_folder, tmp_path):
    dataset = load_dataset(class_folder)
    config = make_config(data=str(class_folder), out=str(tmp_path / "run"), epochs=2, **FAST)
    (tmp_path / "run").mkdir()
    writer = RunWriter(tmp_path / "run")
    t = Trainer(config, dataset, tmp_path / "run", [writer], threading.Event())
    assert t.fits_head and t.start_epoch == 0 and t.last_epoch == 2
    scales = sorted({g.get("lr_scale", 1.0) for g in t.optimizer.param_groups})
    assert len(scales) > 2 and scales[-1] == 1.0 and scales[0] < 0.5  # stem learns slowest
    assert t.fit() == "done"
    assert t.result["row"]["phase"] == "fine-tune"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["phase"].tolist() == ["head", "fine-tune", "fine-tune"]


def test_fine_tuning_that_makes_things_worse_keeps_the_phase_one_model(class_folder, tmp_path):
    # A learning rate far too high wrecks phase two; the result must be phase one's head.
    state = run(class_folder, tmp_path, epochs=2, lr=0.5, label_smoothing=0.0)
    assert state.status in ("done", "diverged")
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    head_accuracy = history.loc[history["epoch"] == 0, "val_accuracy"].item()
    assert state.best_accuracy >= history["val_accuracy"].max() >= head_accuracy
    if state.best_epoch == 0:
        assert "phase one" in state.message
        # The saved model reproduces phase one's validation accuracy.
        model, _ = build_model("test_resnet", 3, "none")
        model.load_state_dict(load_file(tmp_path / "run" / "model.safetensors"))
        predictions = pd.read_csv(tmp_path / "run" / "val_predictions.csv")
        assert np.isclose((predictions["true"] == predictions["predicted"]).mean(), head_accuracy)


def test_one_phase_recipe_trains_everything_from_the_start(class_folder, tmp_path):
    state = run(class_folder, tmp_path, epochs=2, recipe="one-phase")
    assert state.status == "done"
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_a_test_split_is_scored_once_at_the_end_apart_from_validation(split_folder, tmp_path):
    state = run(split_folder, tmp_path, epochs=1)
    assert state.status == "done" and state.test["images"] == 6
    assert 0 <= state.test["accuracy"] <= 1 and state.test["epoch"] == state.best_epoch
    info = runs.read_config(tmp_path / "run")
    assert info["test"] == state.test
    from tlapp.views import status_markdown

    shown = status_markdown(state)
    assert "Accuracy on new images" in shown and "95% interval" in shown
    assert f"Right {state.test['correct']} times in 6 on test images" in shown


@pytest.mark.parametrize("freeze", ["all", 0])  # phase one kept from its embeddings, or not
def test_the_test_score_is_the_saved_models_on_the_held_back_images(class_folder, tmp_path, freeze):
    from tlapp.predict import Predictor

    state = run(class_folder, tmp_path, freeze=freeze, epochs=1)
    dataset = load_dataset(class_folder)  # the default split, as the run made it
    test = dataset.split("test")
    assert state.test["images"] == len(test) == 6
    predicted = Predictor(tmp_path / "run", "cpu").table(test["path"].tolist())["prediction"]
    correct = int((predicted.to_numpy() == test["label"].to_numpy()).sum())
    assert state.test["correct"] == correct
    low, high = state.test["accuracy_low"], state.test["accuracy_high"]
    assert low <= correct / 6 <= high and high - low > 0.2  # six images say little


def test_continuing_an_earlier_run_on_the_same_classes_keeps_its_trained_head(
    class_folder, tmp_path
):
    first = run(class_folder, tmp_path / "a", freeze="all")
    trained = load_file(tmp_path / "a" / "run" / "model.safetensors")
    model, weights = build_model(
        "test_resnet", 3, str(tmp_path / "a" / "run"), classes=first.classes
    )
    assert weights.head_kept and "trained head" in weights.note
    assert torch.equal(model.fc.weight, trained["fc.weight"])
    other, weights = build_model(
        "test_resnet", 3, str(tmp_path / "a" / "run"), classes=["x", "y", "z"]
    )
    assert not weights.head_kept and not other.fc.weight.any()  # other classes: a neutral head
    config = make_config(
        data=str(class_folder),
        out=str(tmp_path / "b"),
        weights=str(tmp_path / "a" / "run"),
        epochs=1,
        **{k: v for k, v in FAST.items() if k != "weights"},
    )
    t = Trainer(config, load_dataset(class_folder), tmp_path / "b", [], threading.Event())
    assert not t.fits_head and t.start_epoch == 1  # the kept head is not fitted again


def test_fine_tuning_a_learned_backbone_keeps_its_batchnorm_statistics(class_folder, tmp_path):
    """Under a fitted head, statistics re-estimated from a few batches would move every feature
    the head reads; a random backbone has none worth keeping."""
    run(class_folder, tmp_path / "a", freeze="all")
    learned = {k: v for k, v in FAST.items() if k != "weights"}
    config = make_config(
        data=str(class_folder),
        out=str(tmp_path / "b"),
        weights=str(tmp_path / "a" / "run"),
        epochs=1,
        lr=0.01,
        **learned,
    )
    t = Trainer(config, load_dataset(class_folder), tmp_path / "b", [], threading.Event())
    statistics = {k: v.clone() for k, v in t.model.state_dict().items() if "running_" in k}
    weights = t.model.layer4[0].conv1.weight.clone()
    assert t.norm_still and t.fit() == "done"
    after = t.model.state_dict()
    assert all(torch.equal(statistics[k], after[k]) for k in statistics)
    assert not torch.equal(weights, t.model.layer4[0].conv1.weight)  # the stage did train
    config = make_config(data=str(class_folder), out=str(tmp_path / "c"), epochs=1, **FAST)
    t = Trainer(config, load_dataset(class_folder), tmp_path / "c", [], threading.Event())
    assert t.fits_head and not t.norm_still


def test_two_phase_starts_from_exactly_the_head_only_model(class_folder, tmp_path):
    """Phase one is the head-only run, even from random weights (whose BatchNorm statistics
    are estimated the same way in both), so the default is never below head only."""
    head = run(class_folder, tmp_path / "head", freeze="all")
    both = run(class_folder, tmp_path / "both", epochs=1)
    phase_one = pd.read_csv(tmp_path / "both" / "run" / "metrics.csv").iloc[0]
    assert phase_one["phase"] == "head"
    assert phase_one["val_accuracy"] == head.best_accuracy
    assert np.isclose(phase_one["val_loss"], head.history[0]["val_loss"], atol=1e-5)
    assert both.best_accuracy >= head.best_accuracy
