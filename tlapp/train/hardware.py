"""The machine a run trains on: device, precision and backend switches, out-of-memory errors."""

from __future__ import annotations

from pathlib import Path

import torch


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("No CUDA GPU is available here: choose device 'cpu' or 'auto'.")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


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


def resolve_precision(choice: str, device: torch.device) -> str:
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def tune_backends(device: torch.device) -> None:
    """TF32 matmuls and cuDNN autotuning on CUDA: free speed for training."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
