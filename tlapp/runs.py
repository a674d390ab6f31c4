"""The run folder: everything needed to reproduce a run or take its model away.

    runs/20261124-101500-resnet18/
        run.json               the app's record: the whole TrainConfig, class names, timm
                               architecture, weights used, status, test score
        config.json            timm's own config (architecture, label_names, preprocessing), so
                               timm.create_model("local-dir:<run folder>", pretrained=True) loads it
        model.safetensors      best weights, the timm model's own state dict (timm key names)
        checkpoint/            the last finished epoch (weights, optimizer, scheduler): for --resume
        metrics.csv            one row per epoch: epoch, train_loss, val_loss, val_accuracy, ...
        confusion_matrix.csv   true classes as rows, predicted as columns (best epoch)
        per_class.csv          precision, recall, F1, support per class (best epoch)
        val_predictions.csv    each validation image: true, predicted, confidence, loss (best epoch)

Every file is written atomically (a temporary file, then `os.replace`), as timm's CheckpointSaver
does, so a crash mid-save never leaves a truncated file behind.

    info = read_config("runs/20261124-101500-resnet18")   # models.load_run rebuilds its model
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .catalogue import ModelError
from .data import Dataset

if TYPE_CHECKING:
    import torch

# The app's record, timm's config (older run folders kept the record in config.json) and the
# weights; models takes these names from here. torch, safetensors and models (timm) are imported
# by the functions that handle tensors: the page lists and reads run folders before torch loads.
RECORD, CONFIG, WEIGHTS = "run.json", "config.json", "model.safetensors"
METRICS = "metrics.csv"
CONFUSION, PER_CLASS = "confusion_matrix.csv", "per_class.csv"
PREDICTIONS = "val_predictions.csv"
CHECKPOINT, LAST_WEIGHTS, TRAINER_STATE = "checkpoint", "last.safetensors", "trainer_state.pt"


class RunError(ValueError):
    """A run folder cannot be used; the message is one sentence meant for the user."""


def new_run_dir(runs_root: str | os.PathLike, model_name: str) -> Path:
    """A fresh, uniquely named folder under `runs_root`."""
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{model_name}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"Could not create a new run folder under '{root}'.")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then move the finished file over `path` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # Writers (safetensors, torch.save) report a full disk in their own words.
        if isinstance(err, Exception) and not isinstance(err, OSError) and disk_nearly_full(path):
            raise OSError(errno.ENOSPC, "No space left on device") from err
        raise


def disk_nearly_full(path: Path, margin: int = 64 << 20) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < margin
    except OSError:
        return False


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=index))


def save_file(tensors: dict, filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, loaded on first use."""
    from safetensors.torch import save_file as save

    save(tensors, filename, metadata=metadata)


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str]) -> None:
    """The model's state dict as safetensors, contiguous CPU tensors with timm's key names."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def save_checkpoint(run_dir: Path, model: torch.nn.Module, state: dict) -> None:
    """The last finished epoch's weights and trainer state, for --resume. The weights go to a
    file named by their epoch and the state, written last and atomically, names it: killed at
    any moment, the folder holds the previous epoch's pair or the new one, never a mix."""
    import torch

    folder = Path(run_dir) / CHECKPOINT
    folder.mkdir(exist_ok=True)
    weights = f"epoch-{state['epoch']:04d}.safetensors"
    save_weights(folder / weights, model, {"epoch": str(state["epoch"])})
    atomic_write(folder / TRAINER_STATE, lambda tmp: torch.save({**state, "weights": weights}, tmp))
    for older in folder.glob("epoch-*.safetensors"):
        if older.name != weights:
            older.unlink(missing_ok=True)


def resumable(run_dir: str | os.PathLike | None) -> bool:
    """Whether a run folder holds a finished epoch to continue from."""
    return bool(run_dir) and (Path(run_dir) / CHECKPOINT / TRAINER_STATE).exists()


def read_checkpoint(run_dir: str | os.PathLike, device) -> tuple[dict, dict]:
    """(model state dict, trainer state) of the last finished epoch; older folders kept the
    weights as checkpoint/last.safetensors."""
    import torch

    folder = Path(run_dir) / CHECKPOINT
    if not resumable(run_dir):
        raise RunError(f"'{run_dir}' has no checkpoint to resume from: no epoch finished.")
    state = torch.load(folder / TRAINER_STATE, map_location=device, weights_only=True)
    return read_state_dict(folder / state.pop("weights", LAST_WEIGHTS)), state


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or a .pth/.pt file, never unpickling arbitrary objects."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(
            f"'{path.name}' cannot be read as PyTorch weights ({_first_line(err)})."
        ) from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"'{path.name}' does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / METRICS
    return pd.read_csv(path).to_dict("records") if path.exists() else []


def run_record(path: Path) -> dict | None:
    """The app's record of a run folder: run.json, or config.json in a folder written before
    config.json became timm's (it then has the app's keys, such as "arch"); None otherwise."""
    if not path.is_dir():
        return None
    record = path / RECORD
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    legacy = path / CONFIG
    if legacy.is_file():
        info = json.loads(legacy.read_text(encoding="utf-8"))
        if isinstance(info, dict) and "arch" in info and "architecture" not in info:
            return info
    return None


def read_config(run_dir: str | os.PathLike) -> dict:
    """The app's record of a run: run.json, or config.json in a folder written before timm's."""

    info = run_record(Path(run_dir))
    if info is None:
        raise RunError(f"'{run_dir}' is not a run folder: it has no {RECORD}.")
    return info


def write_config(run_dir: str | os.PathLike, info: dict) -> None:
    """Write the app's record of a run (run.json)."""
    write_json(Path(run_dir) / RECORD, info)


def write_timm_config(
    run_dir: str | os.PathLike,
    model: torch.nn.Module,
    classes: list[str],
    model_args: dict | None,
    data_config: dict,
) -> None:
    """timm's config.json, so that the folder loads with `local-dir:` as a hub model would."""
    from timm.models._hub import save_config_for_hf

    atomic_write(
        Path(run_dir) / CONFIG,
        lambda tmp: save_config_for_hf(
            model,
            tmp,
            model_config={"label_names": list(classes)},
            model_args=model_args or None,
            data_config=data_config,
        ),
    )


def recorded_dataset(config: dict, stack) -> Dataset:
    """A run's data split as the run split it (its recorded path, validation fraction, seed
    and corrections); a zip is unpacked again into a folder that `stack` (an ExitStack) removes.
    Raises FileNotFoundError when the data is gone, DataError when it can no longer be read."""
    from .data import load_dataset

    source = Path(config.get("data") or "")
    if not config.get("data") or not source.exists():
        raise FileNotFoundError(f"The run's images are no longer at '{config.get('data', '')}'.")
    unpacked = None
    if source.suffix.lower() == ".zip":
        unpacked = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlapp-data-")))
    corrections = config.get("corrections") or None
    return load_dataset(
        source,
        config.get("val_fraction", 0.2),
        config.get("seed", 0),
        extract_to=unpacked / source.stem if unpacked else None,
        corrections=corrections if corrections and Path(corrections).is_file() else None,
        test_fraction=config.get("test_fraction", 0.0),  # runs from before test shares: none
    )


def mark_interrupted(records: Iterable[Path]) -> list[Path]:
    """Runs (given by their run.json) whose record still says "training" when no process
    trains them, as when the app starts again after it was killed: recorded as interrupted,
    with how to go on. The last finished epoch is in checkpoint/, the best model in place."""
    marked = []
    for record in records:
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if info.get("status") != "training":
            continue
        info["status"] = "interrupted"
        info["message"] = "The app stopped while this run was training. " + how_to_go_on(
            record.parent
        )
        write_json(record, info)
        marked.append(record.parent)
    return marked


def how_to_go_on(run_dir: Path) -> str:
    """What to do with a run that was cut off: resume it, or train it again."""
    if resumable(run_dir):
        return f"Continue it from its last finished epoch: tlapp train --resume {run_dir}"
    return "No epoch had finished, so there is nothing to continue: train it again."


# ----------------------------------------------------------------------------- comparing runs
COMPARE_COLUMNS = [
    "run",
    "method",
    "model",
    "test_accuracy",
    "test_low",
    "test_high",
    "test_images",
    "val_accuracy",
    "val_macro_f1",
    "seconds",
    "size_mb",
]


def method_of(info: dict) -> str:
    """What a run did, in a few words: a method's own name (run.json "method") or its recipe."""
    if info.get("method"):
        return str(info["method"])
    config = info.get("config", {})
    if config.get("head") == "prototypes" and str(config.get("freeze")) == "all":
        return "prototypes (no training)"
    if str(config.get("freeze")) == "all" or info.get("freeze", {}).get("trainable_params") == 0:
        return "head only"
    depth = config.get("freeze", 0)
    frozen = f", {depth} stages frozen" if depth else ""
    return f"{config.get('recipe', 'two-phase')} fine-tune{frozen}"


def compare(run_dirs: list[str | os.PathLike]) -> pd.DataFrame:
    """One row per run folder with a saved model: method, model, the test score with its 95%
    interval (when the run had test images), validation accuracy and macro F1 of the kept
    epoch, wall time, model file size; best validation accuracy first (validation is what
    chooses: ranking by the test score would make it one more choice)."""
    rows = []
    for run_dir in map(Path, run_dirs):
        try:
            info = read_config(run_dir)
        except (RunError, ValueError, OSError):
            continue  # not a run folder (or not one this version reads)
        weights = run_dir / WEIGHTS
        if not weights.is_file() or info.get("best_epoch") is None:
            continue
        best = [r for r in read_metrics(run_dir) if r.get("epoch") == info["best_epoch"]]
        test = info.get("test") or {}
        row = {
            "run": run_dir.name,
            "method": method_of(info),
            "model": info.get("arch", ""),
            "test_accuracy": test.get("accuracy"),
            "test_low": test.get("accuracy_low"),
            "test_high": test.get("accuracy_high"),
            "test_images": test.get("images"),
            "val_accuracy": info.get("best_val_accuracy"),
            "val_macro_f1": best[0].get("val_macro_f1") if best else None,
            "seconds": _seconds(info.get("started"), info.get("finished")),
            "size_mb": round(weights.stat().st_size / 1e6, 2),
        }
        rows.append(_adapted(row, info.get("adabn")) if info.get("adabn") else row)
    table = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    return table.sort_values("val_accuracy", ascending=False, ignore_index=True)


def _adapted(row: dict, adabn: dict) -> dict:
    """An AdaBN copy: its scores are for the new kind of images, not the original validation
    split (its metrics files are the original run's), so those columns stay empty."""
    before, after = adabn.get("accuracy_before"), adabn.get("accuracy_after")
    if before is not None and after is not None:
        n = adabn.get("labelled_images")
        row["method"] += f" (on {n} labelled target images: {before:.1%} → {after:.1%})"
    cleared = ("test_accuracy", "test_low", "test_high", "test_images", "val_accuracy")
    return {**row, **dict.fromkeys(cleared), "val_macro_f1": None, "seconds": None}


def _seconds(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    stamp = "%Y-%m-%dT%H:%M:%S"
    return time.mktime(time.strptime(finished, stamp)) - time.mktime(time.strptime(started, stamp))
