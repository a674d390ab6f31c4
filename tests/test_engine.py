"""The training engine: it learns, respects frozen stages, stops on request, writes the run folder."""

import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import StopAt
from safetensors.torch import load_file

from tlapp import runs
from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.predict import Predictor
from tlapp.train import Job, Trainer

# The loop's mechanics, epoch by epoch; the two-phase recipe has tests of its own.
FAST = dict(
    recipe="one-phase", weights="none", img_size=48, batch_size=8, lr=3e-3, runs_root="unused"
)


def train(data, tmp_path, **overrides):
    config = make_config(data=str(data), out=str(tmp_path / "run"), **{**FAST, **overrides})
    state = Job(config).start().wait(timeout=240)
    assert state.status == "done", state.message
    return state


def test_a_short_run_learns_and_writes_a_complete_run_folder(class_folder, tmp_path):
    state = train(class_folder, tmp_path, model="test_resnet", epochs=4)
    assert state.step_losses[-1] < state.step_losses[0]
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert state.best_accuracy >= 0.8  # chance is 1/3
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "run.json",
        "config.json",
        "model.safetensors",
        "metrics.csv",
        "confusion_matrix.csv",
        "per_class.csv",
    }
    info = runs.read_config(run)
    assert info["arch"] == "test_resnet" and info["classes"] == ["blue", "green", "red"]
    assert info["config"]["epochs"] == 4 and info["status"] == "done"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns[:4]) == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    assert metrics["epoch"].tolist() == [1, 2, 3, 4]
    cm = pd.read_csv(run / "confusion_matrix.csv", index_col=0)
    assert list(cm.columns) == info["classes"] and list(cm.index) == info["classes"]
    n_val = len(load_dataset(class_folder).split("val"))
    assert cm.to_numpy().sum() == n_val == info["dataset"]["images"]["val"]  # each counted once
    best_row = metrics.loc[metrics["epoch"] == info["best_epoch"]].iloc[0]
    assert np.trace(cm.to_numpy()) / n_val == pytest.approx(best_row["val_accuracy"])
    per_class = pd.read_csv(run / "per_class.csv")
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
    # timm loads the saved weights directly, by its own key names
    model = timm.create_model("test_resnet", num_classes=3)
    model.load_state_dict(load_file(run / "model.safetensors"))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "name, depth", [("test_resnet", 3), ("test_vit", "all"), ("test_efficientnet", 2)]
)
def test_frozen_stages_do_not_change_weights_or_batchnorm_statistics(
    class_folder, tmp_path, name, depth
):
    dataset = load_dataset(class_folder)
    config = make_config(
        data=str(class_folder),
        model=name,
        freeze=depth,
        epochs=2,
        out=str(tmp_path / "run"),
        **{**FAST, "img_size": 64},
    )
    trainer = Trainer(config, dataset, tmp_path / "run", [], stop_event=_never())
    frozen = {p for stage in trainer.plan.frozen for p in stage.params}
    frozen_modules = {n.rpartition(".")[0] for n in frozen}
    before = snapshot(trainer.model)
    grads_seen = set()
    hooks = [
        p.register_hook(lambda g, n=n: grads_seen.add(n))
        for n, p in trainer.model.named_parameters()
        if p.requires_grad
    ]
    assert trainer.fit() == "done"
    after = snapshot(trainer.model)
    for key in before:
        owner = key.rpartition(".")[0]
        if key in frozen or (
            owner in frozen_modules
            and "running" in key
            or owner in frozen_modules
            and "num_batches" in key
        ):
            assert torch.equal(before[key], after[key]), f"frozen {key} changed"
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any(not torch.equal(before[n], after[n]) for n in trainable)
    # Head only fits the head in closed form on cached features: no gradient flows through
    # the model at all. Otherwise exactly the trainable parameters get gradients.
    assert grads_seen == (set() if trainer.head_only else set(trainable))
    assert all(p.grad is None for n, p in trainer.model.named_parameters() if n in frozen)
    assert (
        sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        == trainer.plan.trainable
    )
    for h in hooks:
        h.remove()


def _never():
    import threading

    return threading.Event()


def test_stop_ends_the_run_within_a_batch_and_keeps_the_best_model(class_folder, tmp_path):
    config = make_config(
        data=str(class_folder), model="test_resnet", epochs=200, out=str(tmp_path / "run"), **FAST
    )
    press = StopAt(epoch=2)
    job = press.job = Job(config, callbacks=[press])
    state = job.start().wait(timeout=120)
    assert state.status == "stopped" and "Stopped by the user" in state.message
    assert press.steps_after == 0  # not one more batch after Stop
    assert len(state.history) == 1 and state.best_epoch == 1  # epoch 2 was left part-way
    # Stop ends training, not the scoring: the kept epoch's model is scored on the test images
    assert state.test is not None and state.test["images"] == 6  # 2 of each class of 12
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert runs.read_config(tmp_path / "run")["status"] == "stopped"


def test_predictor_gives_top_k_probabilities(class_folder, tmp_path):
    train(class_folder, tmp_path, model="test_resnet", epochs=5)
    predictor = Predictor(tmp_path / "run")
    top = predictor.top_k(next((class_folder / "red").iterdir()), k=5)
    assert len(top) == 3 and {c for c, _ in top} == {"red", "green", "blue"}
    assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)
    assert top[0][0] == "red"


def test_failures_are_reported_not_raised(tmp_path):
    state = Job(make_config(data=str(tmp_path / "nothing"), **FAST)).start().wait(timeout=30)
    assert state.status == "failed" and "does not exist" in state.message


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(epochs=0), "Epochs"),
        (dict(lr=5.0), "Learning rate"),
        (dict(val_fraction=1.5), "validation"),
        (dict(colour="red"), "Unknown"),
    ],
)
def test_config_is_checked(bad, message):
    with pytest.raises(ValueError, match=message):
        make_config(data="x", **bad)


def test_the_engine_and_the_models_never_import_gradio():
    """Every module outside the page (tlapp.web) loads without gradio."""
    import pkgutil

    import tlapp

    names = [
        m.name
        for m in pkgutil.walk_packages(tlapp.__path__, "tlapp.")
        if not m.name.startswith(("tlapp.web", "tlapp.__main__"))
    ]
    assert {"tlapp.train.loop", "tlapp.train.job", "tlapp.models", "tlapp.cli"} <= set(names)
    code = f"import sys, importlib; [importlib.import_module(n) for n in {names!r}]; "
    code += "print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_balanced_class_weights_are_inverse_frequencies(tmp_path):
    from conftest import write_classes

    from tlapp.train.recipes import class_weights

    root = write_classes(tmp_path / "d", per_class=20, classes={"a": (200, 0, 0)})
    write_classes(root, per_class=5, classes={"b": (0, 0, 200)})
    ds = load_dataset(root)
    weights = class_weights(ds)
    counts = ds.split("train")["label"].value_counts()
    assert weights[1] / weights[0] == pytest.approx(counts["a"] / counts["b"])
    assert (weights * torch.tensor([counts["a"], counts["b"]])).sum() == pytest.approx(counts.sum())


def imbalanced_folder(tmp_path, rare: int):
    from conftest import write_classes

    root = write_classes(tmp_path / "d", per_class=40, classes={"common": (200, 0, 0)})
    return write_classes(root, per_class=rare, classes={"rare": (0, 0, 200)})


@pytest.mark.parametrize(
    "rare, setting, balanced",
    [(6, "auto", True), (20, "auto", False), (6, "off", False), (20, "on", True)],
)
def test_imbalanced_classes_are_balanced_by_default(tmp_path, rare, setting, balanced):
    """auto: the loss weighs rare classes up, and the kept epoch is chosen on balanced accuracy,
    when the largest class has at least 5 times the smallest's training images."""
    root = imbalanced_folder(tmp_path, rare)
    config = make_config(data=str(root), model="test_resnet", balance_classes=setting, **FAST)
    t = Trainer(config, load_dataset(root), tmp_path / "run", [], threading.Event())
    assert t.balanced == balanced and (t.class_weights is not None) == balanced
    assert t.chosen_on == ("val_balanced_accuracy" if balanced else "val_accuracy")
    from tlapp.train.callbacks import describe_recipe

    said = " ".join(describe_recipe(t))
    assert ("Rare classes count as much as common ones" in said) == balanced
    assert ("times the smallest's training images" in said) == (balanced and setting == "auto")


def test_a_balanced_run_keeps_the_epoch_with_the_best_balanced_accuracy(tmp_path):
    root = imbalanced_folder(tmp_path, 6)
    config = make_config(data=str(root), model="test_resnet", **FAST)
    t = Trainer(config, load_dataset(root), tmp_path / "run", [], threading.Event())
    rows = [  # epoch 1 is right more often; epoch 2 finds the rare class
        {"val_accuracy": 0.9, "val_balanced_accuracy": 0.5, "val_loss": 0.3},
        {"val_accuracy": 0.8, "val_balanced_accuracy": 0.85, "val_loss": 0.5},
        {"val_accuracy": 0.95, "val_balanced_accuracy": 0.7, "val_loss": 0.2},
    ]
    for t.epoch, row in enumerate(rows, start=1):
        t._track_best(row)
    assert t.best_epoch == 2 and t.best_accuracy == 0.8 and t.best_score == 0.85


def test_a_checkbox_or_an_older_run_record_sets_balancing_on_or_off():
    assert make_config(data="d", balance_classes=True).balance_classes == "on"
    assert make_config(data="d", balance_classes=False).balance_classes == "off"
    assert make_config(data="d").balance_classes == "auto"
    with pytest.raises(ValueError, match="Balance classes must be one of auto, on, off"):
        make_config(data="d", balance_classes="sometimes")


def test_the_wilson_interval_matches_published_values():
    from tlapp.metrics import wilson_interval

    # Newcombe (1998), Table I: 81 of 263, and 0 of 10 and 10 of 10 at the ends.
    assert np.allclose(wilson_interval(81, 263), (0.2553, 0.3662), atol=5e-5)
    assert wilson_interval(0, 10)[0] == 0 and np.isclose(
        wilson_interval(0, 10)[1], 0.2775, atol=5e-5
    )
    assert wilson_interval(10, 10)[1] == 1 and np.isclose(
        wilson_interval(10, 10)[0], 0.7225, atol=5e-5
    )
    low, high = wilson_interval(47, 50)
    assert (
        low < 47 / 50 < high
        and wilson_interval(470, 500)[1] - wilson_interval(470, 500)[0] < high - low
    )
