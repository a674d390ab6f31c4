"""Training faults injected into the engine: out of memory, NaN, a save that fails, a full disk,
a crash and a resume, a queue of jobs, a weights file that tries to run code."""

import errno
import pickle
import threading
import time

import pandas as pd
import pytest
import timm
import torch
from conftest import StopAt
from safetensors.torch import load_file

from tlapp import runs
from tlapp.config import make_config
from tlapp.models import ModelError, build_model
from tlapp.train import Job, resume_config
from tlapp.train.batches import ImageSource
from tlapp.train.slots import TrainingSlots

FAST = dict(
    recipe="one-phase",  # these tests exercise the loop's fault handling, epoch by epoch
    model="test_resnet",
    weights="none",
    img_size=48,
    batch_size=8,
    lr=3e-3,
    augment=False,
    precision="fp32",
)


def run(folder, out, **overrides):
    config = make_config(data=str(folder), out=str(out), **{**FAST, **overrides})
    return Job(config).start().wait(timeout=240)


def loadable(path) -> bool:
    model = timm.create_model("test_resnet", num_classes=3)
    model.load_state_dict(load_file(path))
    return True


def test_out_of_memory_retries_with_a_smaller_batch(class_folder, tmp_path, monkeypatch):
    real = ImageSource.forward

    def forward(self, model, x):
        if x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, model, x)

    monkeypatch.setattr(ImageSource, "forward", forward)
    state = run(class_folder, tmp_path / "run", epochs=2)
    assert state.status == "done", state.message
    assert any("lowered to 4" in note for note in state.notes)
    info = runs.read_config(tmp_path / "run")
    assert info["batch_size_used"] == 4 and info["notes"]


def test_out_of_memory_at_batch_one_stops_and_keeps_the_best_model(
    class_folder, tmp_path, monkeypatch
):
    real = ImageSource.forward
    calls = {"epochs": set()}

    def forward(self, model, x):
        if model.training and calls.get("fail"):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
        return real(self, model, x)

    def after_first_epoch(self, t):
        calls["fail"] = True

    monkeypatch.setattr(ImageSource, "forward", forward)
    from tlapp.train.callbacks import RunWriter

    original = RunWriter.after_epoch
    monkeypatch.setattr(
        RunWriter, "after_epoch", lambda self, t: (original(self, t), after_first_epoch(self, t))
    )
    state = run(class_folder, tmp_path / "run", epochs=3)
    assert state.status == "failed" and "one image at a time" in state.message
    assert state.best_epoch == 1 and loadable(tmp_path / "run" / "model.safetensors")


def test_a_nan_loss_stops_the_run_as_diverged(class_folder, tmp_path, monkeypatch):
    real = ImageSource.forward
    seen = {"train_batches": 0}

    def forward(self, model, x):
        out = real(self, model, x)
        if model.training:
            seen["train_batches"] += 1
            if seen["train_batches"] > 5:  # epoch 2 onwards (4 batches an epoch)
                return out * float("nan")
        return out

    monkeypatch.setattr(ImageSource, "forward", forward)
    state = run(class_folder, tmp_path / "run", epochs=4)
    assert state.status == "diverged" and "lower the learning rate" in state.message
    assert state.best_epoch == 1 and len(state.history) == 1
    assert runs.read_config(tmp_path / "run")["status"] == "diverged"
    assert loadable(tmp_path / "run" / "model.safetensors")


def test_a_save_that_fails_half_way_leaves_the_previous_model_loadable(
    class_folder, tmp_path, monkeypatch
):
    real_save = runs.save_file
    saves = {"n": 0}

    def failing_save(tensors, filename, metadata=None):
        saves["n"] += 1
        if saves["n"] >= 3:  # epoch 1 saved the best model and the checkpoint; then the disk fills
            with open(filename, "wb") as f:
                f.write(b"\x00" * 100)  # half a file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(runs, "save_file", failing_save)
    state = run(class_folder, tmp_path / "run", epochs=4, lr=1e-2)
    assert state.status == "failed" and "disk is full" in state.message
    assert loadable(tmp_path / "run" / "model.safetensors")
    assert not [p for p in (tmp_path / "run").rglob("*.tmp")]  # no half-written leftovers


def test_a_stopped_run_resumes_where_it_stopped_and_ends_where_an_unbroken_one_does(
    class_folder, tmp_path
):
    whole = run(class_folder, tmp_path / "whole", epochs=4)
    assert whole.status == "done"

    config = make_config(data=str(class_folder), out=str(tmp_path / "broken"), epochs=4, **FAST)
    # as when the page is closed during epoch 2: finish the epoch, save, end
    close = StopAt(epoch=2, finish=True)
    job = close.job = Job(config, callbacks=[close])
    stopped = job.start().wait(120)
    assert stopped.status == "stopped" and "page was closed" in stopped.message
    assert len(stopped.history) == 2

    resumed = Job(resume_config(tmp_path / "broken"), resume=True).start().wait(240)
    assert resumed.status == "done", resumed.message
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    metrics = pd.read_csv(tmp_path / "broken" / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3, 4]
    a, _ = runs.read_checkpoint(tmp_path / "whole", "cpu")
    b, _ = runs.read_checkpoint(tmp_path / "broken", "cpu")
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def test_resume_needs_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.RunError):
        resume_config(tmp_path / "empty")


def test_jobs_wait_their_turn_and_a_stop_leaves_the_queue(class_folder, tmp_path):
    slots = TrainingSlots(capacity=1)
    first = Job(
        make_config(data=str(class_folder), out=str(tmp_path / "a"), epochs=100, **FAST),
        slots=slots,
    ).start()
    second = Job(
        make_config(data=str(class_folder), out=str(tmp_path / "b"), epochs=1, **FAST), slots=slots
    ).start()
    third = Job(
        make_config(data=str(class_folder), out=str(tmp_path / "c"), epochs=1, **FAST), slots=slots
    ).start()
    deadline = time.time() + 30
    while time.time() < deadline and {second.snapshot().status, third.snapshot().status} != {
        "queued"
    }:
        time.sleep(0.02)
    assert "place 1 in the queue" in second.snapshot().message
    assert "place 2 in the queue" in third.snapshot().message
    third.stop()
    assert third.wait(10).message == "Stopped while waiting in the queue."
    assert first.snapshot().status in ("starting", "training")
    assert second.snapshot().status == "queued"
    first.stop()
    assert first.wait(30).status == "stopped"
    assert second.wait(240).status == "done"  # it started by itself
    assert not (tmp_path / "c").exists()


class Hold:
    """Keeps a run inside its first fine-tuning epoch until `release` is set."""

    def __init__(self):
        self.inside, self.release = threading.Event(), threading.Event()

    def before_epoch(self, trainer):
        if trainer.epoch == 1:
            self.inside.set()
            assert self.release.wait(120), "never released"


def test_head_only_jobs_do_not_wait_behind_a_long_fine_tune(class_folder, tmp_path):
    slots = TrainingSlots(capacity=1)
    hold = Hold()
    long = Job(
        make_config(data=str(class_folder), out=str(tmp_path / "long"), epochs=50, **FAST),
        slots=slots,
        callbacks=[hold],
    ).start()
    assert hold.inside.wait(120)  # the fine-tune holds the only slot
    short = [
        Job(
            make_config(data=str(class_folder), out=str(tmp_path / f"s{i}"), freeze="all", **FAST),
            slots=slots,
        ).start()
        for i in range(2)
    ]
    waiting = Job(
        make_config(data=str(class_folder), out=str(tmp_path / "second-long"), epochs=1, **FAST),
        slots=slots,
    ).start()
    try:
        for job in short:  # both finish while the long one is still in its first epoch
            assert job.wait(120).status == "done", job.snapshot().message
        assert long.snapshot().status == "training" and not hold.release.is_set()
        assert waiting.snapshot().status == "queued"  # the long line still waits its turn
        assert "place 1 in the queue" in waiting.snapshot().message
    finally:
        hold.release.set()
        long.stop()
        waiting.stop()
        long.wait(60)
        waiting.wait(60)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/tlapp-pwned",))


def test_a_weights_file_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Exploit()}, f)
    with pytest.raises(ModelError, match="cannot be read"):
        build_model("test_resnet", 3, str(path))
    import os

    assert not os.path.exists("/tmp/tlapp-pwned")


def test_a_writer_failing_on_a_nearly_full_disk_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))

    def write(tmp):
        raise RuntimeError("safetensors: I/O error writing the file")

    with pytest.raises(OSError) as caught:
        runs.atomic_write(tmp_path / "model.safetensors", write)
    assert caught.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())


def test_distilled_models_train_their_head_the_ordinary_way(class_folder, tmp_path):
    """A distilled DeiT has two classifiers (a tuple), so its head cannot run on embeddings."""
    import threading

    from tlapp.data import load_dataset
    from tlapp.train import Trainer

    config = make_config(
        data=str(class_folder),
        out=str(tmp_path / "r"),
        freeze="all",
        epochs=1,
        model="deit_tiny_distilled_patch16_224",
        weights="none",
        img_size=48,
        batch_size=8,
        precision="fp32",
    )
    trainer = Trainer(config, load_dataset(class_folder), tmp_path / "r", [], threading.Event())
    assert isinstance(trainer.model.get_classifier(), tuple) and not trainer.head_only
    assert trainer.fit() == "done"
