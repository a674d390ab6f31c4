"""Fine-tuning a learned backbone under its head validates, keeps and saves the mean of the
weights since fine-tuning began (tlapp/train/average.py); training goes on from its own weights,
and a resumed run carries the mean on."""

import threading

import pytest
import torch
from conftest import StopAt

from tlapp import runs
from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.train import Job, Trainer, resume_config
from tlapp.train.average import WeightAverage
from tlapp.train.callbacks import RunWriter, describe_recipe

FAST = dict(model="test_resnet", img_size=48, batch_size=8, precision="fp32", lr=0.01)


@pytest.fixture
def learned(class_folder, tmp_path) -> str:
    """A head-only run: a backbone with weights worth keeping, and its fitted head."""
    config = make_config(
        data=str(class_folder), out=str(tmp_path / "head"), weights="none", freeze="all", **FAST
    )
    assert Job(config).start().wait(timeout=240).status == "done"
    return str(tmp_path / "head")


class Snapshots:
    """The model's weights as each epoch begins, and as it is validated and saved."""

    def __init__(self):
        self.at, self.validated = {}, {}

    def before_epoch(self, t):
        self.at[t.epoch] = {k: v.clone() for k, v in t.model.state_dict().items()}

    def after_epoch(self, t):
        self.validated[t.epoch] = {k: v.clone() for k, v in t.model.state_dict().items()}


def floats(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.is_floating_point()}


def fine_tune(class_folder, out, weights, callbacks=(), **overrides) -> Trainer:
    out.mkdir()
    config = make_config(data=str(class_folder), out=str(out), weights=weights, **FAST, **overrides)
    trainer = Trainer(
        config, load_dataset(class_folder), out, [RunWriter(out), *callbacks], threading.Event()
    )
    assert trainer.fit() == "done"
    return trainer


def test_each_epoch_is_kept_as_the_mean_of_the_weights_since_fine_tuning_began(
    class_folder, tmp_path, learned
):
    seen = Snapshots()
    t = fine_tune(class_folder, tmp_path / "run", learned, [seen], epochs=2)
    assert t.averaging and any("mean of the weights" in line for line in describe_recipe(t))
    saved, state = runs.read_checkpoint(tmp_path / "run", "cpu")
    trained = state["trained"]
    assert state["averaged"] == 3  # the weights fine-tuning began from, then two epochs
    for name, value in floats(saved).items():
        mean = (seen.at[1][name] + seen.at[2][name] + trained[name]) / 3
        assert torch.allclose(value, mean, atol=1e-6), name
    assert not all(torch.equal(saved[k], trained[k]) for k in floats(saved))
    for name, value in floats(seen.validated[1]).items():
        # epoch 1 was the mean of where it began and where it ended; epoch 2 trained on from
        # where epoch 1 ended, not from that mean
        assert torch.allclose(value, (seen.at[1][name] + seen.at[2][name]) / 2, atol=1e-6)
    assert not all(torch.equal(seen.validated[1][k], seen.at[2][k]) for k in floats(saved))
    kept = runs.read_state_dict(tmp_path / "run" / runs.WEIGHTS)
    for name, value in floats(seen.validated[t.best_epoch]).items():
        assert torch.equal(kept[name], value), name


def test_without_averaging_the_epoch_is_the_weights_as_trained(class_folder, tmp_path, learned):
    t = fine_tune(class_folder, tmp_path / "run", learned, epochs=1, average_weights=False)
    saved, state = runs.read_checkpoint(tmp_path / "run", "cpu")
    assert not t.averaging and "trained" not in state
    assert not any("mean of the weights" in line for line in describe_recipe(t))
    assert all(torch.equal(v, saved[k]) for k, v in floats(t.model.state_dict()).items())


def test_random_weights_are_not_averaged(class_folder, tmp_path):
    """Their BatchNorm statistics move as they train: a mean of weights would not match them."""
    t = fine_tune(class_folder, tmp_path / "run", "none", epochs=1)
    assert not t.norm_still and not t.averaging


def test_a_resumed_run_carries_the_mean_on(class_folder, tmp_path, learned):
    whole = make_config(
        data=str(class_folder), out=str(tmp_path / "whole"), weights=learned, epochs=3, **FAST
    )
    assert Job(whole).start().wait(240).status == "done"
    broken = make_config(
        data=str(class_folder), out=str(tmp_path / "broken"), weights=learned, epochs=3, **FAST
    )
    close = StopAt(epoch=1, finish=True)
    close.job = Job(broken, callbacks=[close])
    assert close.job.start().wait(240).status == "stopped"
    resumed = Job(resume_config(tmp_path / "broken"), resume=True).start().wait(240)
    assert resumed.status == "done", resumed.message
    (a, a_state), (b, b_state) = (
        runs.read_checkpoint(tmp_path / d, "cpu") for d in ("whole", "broken")
    )
    assert a_state["averaged"] == b_state["averaged"] == 4
    for name in floats(a):
        assert torch.allclose(a[name], b[name], atol=1e-5), name
        assert torch.allclose(a_state["trained"][name], b_state["trained"][name], atol=1e-5)


def test_the_mean_is_swapped_back_out_even_when_validation_fails():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.add(model)
    trained = model.weight.clone()
    with pytest.raises(RuntimeError), average.swapped_in(model):
        assert torch.allclose(model.weight, trained - 0.5)  # the mean of before and after
        raise RuntimeError("validation failed")
    assert torch.equal(model.weight, trained)
