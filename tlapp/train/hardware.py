"""The machine a run trains on: device, precision and backend switches, out-of-memory errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch


def mps_available() -> bool:
    """An Apple-silicon GPU through Metal (MPS)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(choice: str = "auto") -> torch.device:
    """`auto`: a CUDA GPU, else an Apple GPU (MPS), else the CPU; a GPU named but missing is an
    error rather than a silent CPU run."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("No CUDA GPU is available here: choose device 'cpu' or 'auto'.")
    if choice == "mps" and not mps_available():
        raise ValueError(
            "No Apple GPU (MPS) is available here: it needs an Apple-silicon Mac with a PyTorch "
            "built for Metal. Choose device 'cpu' or 'auto'."
        )
    if choice in ("cpu", "cuda", "mps"):
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if mps_available() else "cpu")


def cpu_supports_bf16() -> bool:
    """bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 autocast roughly halves step time."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure, which arrives as a RuntimeError."""
    return (
        isinstance(err, (torch.OutOfMemoryError, MemoryError))
        or "can't allocate memory" in str(err)
        or "out of memory" in str(err).lower()
    )


def bf16_supported(device: torch.device) -> bool:
    """bf16 that the hardware runs natively: CUDA capability 8.0 or later (Ampere on), Metal on
    macOS 14 or later, CPUs with bf16 instructions. (PyTorch emulates bf16 on older GPUs such as
    the T4, slower than fp16.)"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "mps":
        return torch.backends.mps.is_macos_or_newer(14, 0)
    return cpu_supports_bf16()


# Autocast on Apple GPUs came in torch 2.5, and GradScaler steps failed there in its first
# releases: mixed precision on MPS from 2.6 on, fp32 before.
MPS_MIXED_PRECISION = (2, 6)


def torch_release() -> tuple[int, int]:
    """(major, minor) of the installed torch, from its version string ('2.5.1+cpu': (2, 5))."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def precision_note(choice: str, device: torch.device) -> str:
    """Why auto chose fp32 on an Apple GPU, for run.json; empty when nothing needs saying."""
    if choice == "auto" and device.type == "mps" and torch_release() < MPS_MIXED_PRECISION:
        return (
            f"fp32 on the Apple GPU: torch {torch.__version__} predates reliable mixed "
            f"precision there ({'.'.join(map(str, MPS_MIXED_PRECISION))} or later)."
        )
    return ""


def resolve_precision(choice: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 (mixed precision: autocast, with a GradScaler for fp16).

    auto: bf16 where the device runs it natively; fp16 on GPUs without it (CUDA before Ampere,
    Apple GPUs), fp32 on CPUs without it and on Apple GPUs under a torch before 2.6. Asked for
    explicitly, mixed precision on an Apple GPU that cannot run it and fp16 on the CPU are
    errors."""
    if device.type == "mps" and torch_release() < MPS_MIXED_PRECISION:
        if choice in ("bf16", "fp16"):
            raise ValueError(
                f"Mixed precision on an Apple GPU needs torch 2.6 or later (this is "
                f"{torch.__version__}): choose fp32, or upgrade torch."
            )
        return "fp32"
    if choice == "auto":
        if bf16_supported(device):
            return "bf16"
        return "fp16" if device.type in ("cuda", "mps") else "fp32"
    if choice == "bf16" and device.type == "mps" and not bf16_supported(device):
        raise ValueError("This Apple GPU has no bf16 (it needs macOS 14): choose fp16 or fp32.")
    if choice == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for GPUs: on the CPU choose bf16 or fp32 (or auto).")
    return choice


def autocast_context(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a precision: bf16 or fp16 matmuls and convolutions, or off."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling: a GradScaler for fp16, a pass-through
    (disabled) one otherwise, so one training step serves every precision."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def empty_cache(device: torch.device) -> None:
    """Give the GPU allocator's cached blocks back (after running out of memory)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def tune_backends(device: torch.device) -> None:
    """TF32 matmuls and cuDNN autotuning on CUDA: free speed for training."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def background_priority(step: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads one by one): on a
    machine shared with the page, a training run then takes the CPU the page leaves, and a
    visitor opening the page or asking for a prediction does not wait behind it. The thread
    pool torch starts from this thread inherits it. Elsewhere this does nothing."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + step)
    except (AttributeError, OSError):  # not Linux, or not allowed: the run goes on as it was
        pass
