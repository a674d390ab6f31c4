"""The machine a run trains on: device and precision for CUDA GPUs, Apple GPUs (MPS) and CPUs,
chosen here on stand-ins for the hardware; and the one training step every precision shares."""

import threading

import pytest
import torch

from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.train import Trainer, embedder, hardware, loop
from tlapp.train.hardware import autocast_context, grad_scaler, pick_device, resolve_precision
from tlapp.train.lr_find import find_lr

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def machine(monkeypatch, cuda=False, capability=0.0, mps=False, macos14=False, cpu_bf16=False):
    """Stand in for the hardware: a CUDA GPU of a compute capability, an Apple GPU, a CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",  # PyTorch emulates bf16 below capability 8.0
        lambda including_emulation=True: cuda and (capability >= 8.0 or including_emulation),
    )
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14)
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: cpu_bf16)


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_picks_cuda_then_an_apple_gpu_then_the_cpu(monkeypatch, cuda, mps, expected):
    machine(monkeypatch, cuda=cuda, mps=mps)
    assert pick_device("auto") == torch.device(expected)
    assert pick_device("cpu") == CPU


def test_a_gpu_asked_for_but_missing_is_a_clear_error(monkeypatch):
    machine(monkeypatch, mps=True)
    assert pick_device("mps") == MPS
    with pytest.raises(ValueError, match="No CUDA GPU"):
        pick_device("cuda")
    machine(monkeypatch, cuda=True)
    assert pick_device("cuda") == CUDA
    with pytest.raises(ValueError, match=r"No Apple GPU \(MPS\).*'cpu' or 'auto'"):
        pick_device("mps")
    assert make_config(data="x", device="mps").device == "mps"
    with pytest.raises(ValueError, match="auto, cpu, cuda or mps"):
        make_config(data="x", device="tpu")


@pytest.mark.parametrize(
    "capability, expected", [(7.5, "fp16"), (7.0, "fp16"), (8.0, "bf16"), (9.0, "bf16")]
)
def test_cuda_gpus_without_native_bf16_train_in_fp16_with_a_grad_scaler(
    monkeypatch, capability, expected
):
    """A T4 (7.5) or V100 (7.0) only emulates bf16: fp16 autocast and loss scaling instead."""
    machine(monkeypatch, cuda=True, capability=capability)
    precision = resolve_precision("auto", CUDA)
    assert precision == expected
    assert grad_scaler(CUDA, precision).is_enabled() == (expected == "fp16")
    dtype = torch.float16 if expected == "fp16" else torch.bfloat16
    assert autocast_context(CUDA, precision).fast_dtype == dtype
    for asked in ("fp32", "fp16", "bf16"):  # what is asked for is what runs
        assert resolve_precision(asked, CUDA) == asked


def test_apple_gpus_get_fp16_and_bf16_only_where_metal_has_it(monkeypatch):
    machine(monkeypatch, mps=True)
    assert resolve_precision("auto", MPS) == "fp16"
    assert grad_scaler(MPS, "fp16").is_enabled()
    assert resolve_precision("fp32", MPS) == "fp32"
    with pytest.raises(ValueError, match="no bf16.*fp16 or fp32"):
        resolve_precision("bf16", MPS)
    machine(monkeypatch, mps=True, macos14=True)
    assert resolve_precision("bf16", MPS) == "bf16"
    assert resolve_precision("auto", MPS) == "bf16"


@pytest.mark.parametrize("version", ["2.4.1", "2.5.1+cpu", "2.6.0", "2.10.0"])
def test_apple_gpus_get_mixed_precision_only_from_torch_2_6(monkeypatch, version):
    from tlapp.train.hardware import precision_note

    machine(monkeypatch, mps=True, macos14=True)
    monkeypatch.setattr(torch, "__version__", version)
    if version.startswith(("2.4", "2.5")):
        assert resolve_precision("auto", MPS) == "fp32"
        assert version in precision_note("auto", MPS) and "2.6 or later" in precision_note(
            "auto", MPS
        )
        for asked in ("fp16", "bf16"):
            with pytest.raises(ValueError, match=r"needs torch 2\.6 or later.*choose fp32"):
                resolve_precision(asked, MPS)
    else:
        assert resolve_precision("auto", MPS) == "bf16"
        assert resolve_precision("fp16", MPS) == "fp16" and precision_note("auto", MPS) == ""
    assert resolve_precision("fp32", MPS) == "fp32"
    assert precision_note("auto", CPU) == "" and resolve_precision("auto", CUDA) in ("bf16", "fp16")


@pytest.mark.parametrize("cpu_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_on_the_cpu_nothing_changes(monkeypatch, cpu_bf16, expected):
    machine(monkeypatch, cpu_bf16=cpu_bf16)
    assert resolve_precision("auto", CPU) == expected
    assert not grad_scaler(CPU, expected).is_enabled()
    assert autocast_context(CPU, "fp32")._enabled is False
    assert autocast_context(CPU, "bf16").fast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        resolve_precision("fp16", CPU)


FAST = dict(
    model="test_resnet",
    weights="none",
    img_size=48,
    batch_size=8,
    epochs=1,
    recipe="one-phase",
    augment=False,
    precision="fp32",
)


def test_training_and_the_finder_step_through_one_helper_with_the_scaler(
    class_folder, tmp_path, monkeypatch
):
    """fp16 (run on the CPU here, where PyTorch allows it) scales the loss in training and in
    the learning-rate finder alike; fp32 passes through a disabled scaler."""
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    plain = Trainer(config, load_dataset(class_folder), tmp_path / "a", [], threading.Event())
    assert plain.precision == "fp32" and not plain.scaler.is_enabled()

    monkeypatch.setattr(embedder, "resolve_precision", lambda choice, device: "fp16")
    steps = []
    update = loop.Trainer.update

    def counted(self, inputs, targets):
        loss = update(self, inputs, targets)
        steps.append((self.scaler.is_enabled(), self.scaler.get_scale()))
        return loss

    monkeypatch.setattr(loop.Trainer, "update", counted)
    half = Trainer(config, load_dataset(class_folder), tmp_path / "b", [], threading.Event())
    assert half.precision == "fp16" and half.scaler.is_enabled()
    assert half.fit() == "done"
    trained = len(steps)
    assert trained == half.steps_per_epoch and all(on and scale > 1 for on, scale in steps)
    assert "scaler" in half.checkpoint_state() and half.checkpoint_state()["scaler"]
    find_lr(config, load_dataset(class_folder), num_it=6)
    assert len(steps) > trained and all(on for on, _ in steps)


def test_a_run_on_the_shared_machine_yields_the_cpu_to_the_page():
    """background_priority lowers only the calling thread's priority (on Linux)."""
    import os
    import sys
    import threading

    from tlapp.train.hardware import background_priority

    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread priorities are Linux's")
    seen = {}

    def run():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        background_priority(5)
        seen["change"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen["change"] == min(5, 19 - main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
