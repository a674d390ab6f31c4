"""The learning-rate finder: a sweep that rises, a suggestion inside it, nothing left behind."""

import threading

import numpy as np
import pytest
import torch

from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.train import StopTraining, Trainer
from tlapp.train.lr_find import find_lr, sweep, valley

FAST = dict(model="test_resnet", weights="none", img_size=48, batch_size=4, precision="fp32")


def test_the_sweep_rises_and_suggests_a_rate_inside_it(class_folder, tmp_path):
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    seen = []
    finding = find_lr(config, num_it=30, progress=lambda what, done, total: seen.append(what))
    assert len(finding.lrs) >= 10 and np.all(np.diff(finding.lrs) > 0)
    assert all(np.isfinite(finding.losses))
    assert finding.lrs[0] <= finding.suggestion <= finding.lrs[-1]
    assert "valley" in finding.how and "Finding a learning rate" in seen
    assert list(finding.table().columns) == ["lr", "loss"]


def test_the_finder_leaves_no_run_behind(class_folder, tmp_path):
    config = make_config(
        data=str(class_folder), runs_root=str(tmp_path / "runs"), recipe="one-phase", **FAST
    )
    find_lr(config, load_dataset(class_folder), num_it=12)
    assert not (tmp_path / "runs").exists()


def test_head_only_has_no_learning_rate_to_find(class_folder):
    config = make_config(data=str(class_folder), freeze="all", **FAST)
    with pytest.raises(ValueError, match="without a learning rate"):
        find_lr(config, num_it=10)


def test_valley_picks_a_point_on_the_way_down():
    lrs = list(np.logspace(-7, 1, 100))
    x = np.linspace(-1, 1, 100)
    losses = list(2 - np.cos(np.clip(x * 3, -np.pi, np.pi)) + (x > 0.6) * 20 * (x - 0.6))
    suggestion, _ = valley(lrs, losses, 100)
    index = lrs.index(suggestion)
    bottom = int(np.argmin(losses))
    assert 10 <= index < bottom and losses[index] < losses[10]
    assert torch.tensor(suggestion).isfinite()


class Peek:
    """A callback that keeps the stem's weights as they are at each step of the sweep."""

    def on_progress(self, trainer):
        self.stem = next(trainer.model.parameters()).detach().clone()


def prepared(class_folder, tmp_path, callbacks=(), **settings) -> Trainer:
    settings = {**FAST, "cache_dir": str(tmp_path / "cache"), **settings}
    config = make_config(data=str(class_folder), **settings)
    dataset = load_dataset(class_folder)
    trainer = Trainer(config, dataset, tmp_path / "run", list(callbacks), threading.Event())
    trainer.prepare()
    return trainer


def test_the_sweep_keeps_layer_ratios_and_puts_the_weights_back(class_folder, tmp_path):
    peek = Peek()
    trainer = prepared(class_folder, tmp_path, [peek], layer_decay=0.5)  # two-phase
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    name, stem = next(trainer.model.named_parameters())
    lrs, losses = sweep(trainer, 1e-6, 1e-2, 12)
    assert len(lrs) == 12 and not torch.equal(peek.stem, before[name])  # it did train
    groups = trainer.optimizer.param_groups
    assert len({g["lr_scale"] for g in groups}) > 1  # layer decay: stages learn at their rates
    for g in groups:
        assert g["lr"] == pytest.approx(lrs[-1] * g["lr_scale"])
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert torch.equal(stem, before[name])


def test_the_sweep_stops_when_the_loss_runs_away(class_folder, tmp_path):
    trainer = prepared(class_folder, tmp_path, recipe="one-phase")
    lrs, losses = sweep(trainer, 1e-2, 1e6, 40)
    assert 1 < len(lrs) < 40 and all(np.isfinite(losses))


def test_a_stop_ends_the_finder(class_folder, tmp_path):
    stop = threading.Event()
    stop.set()
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    with pytest.raises(StopTraining):
        find_lr(config, stop_event=stop, num_it=10)
