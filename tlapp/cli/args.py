"""What the commands share: the help format, TrainConfig settings as flags, --json."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields

from ..config import BALANCE, FRAMINGS, RECIPES, TrainConfig


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in --help, except empty ones ("default: " would say nothing)."""

    def _get_help_string(self, action):
        if action.default in (None, "") or action.default is False:
            return action.help
        return super()._get_help_string(action)


# Help for each TrainConfig setting; its flag, type and default come from the dataclass itself.
SETTINGS_HELP = {
    "model": "any timm model name",
    "weights": "auto | pretrained | none | a .safetensors/.pth file | a run folder",
    "freeze": "stages frozen from the input: 0 trains everything, 'all' only the head",
    "epochs": "fine-tuning epochs (phase two); with --resume, the total to extend the run to",
    "img_size": "images are resized to this square",
    "batch_size": "images per training step",
    "lr": "fine-tuning learning rate (of the layers next to the head)",
    "recipe": "two-phase: fit the head on frozen features, then fine-tune; "
    "one-phase: train everything together from the start",
    "layer_decay": "two-phase fine-tuning: each layer nearer the input learns this much slower",
    "average_weights": "two-phase: after each fine-tuning epoch, validate and keep the mean of the "
    "weights since fine-tuning began (steadier than the last epoch's weights)",
    "patience": "two-phase: stop fine-tuning after this many epochs without a better one "
    "(0: never stop early)",
    "weight_decay": "AdamW's weight decay",
    "warmup_epochs": "epochs of learning-rate warm-up",
    "label_smoothing": "label smoothing of the loss",
    "augment": "light augmentation: horizontal flip, mild colour jitter",
    "val_fraction": "share of each class held out for validation when there is no val/ folder",
    "test_fraction": "share of each class held back when there is no test/ folder: scored once, "
    "at the end, with the kept model (0: none)",
    "seed": "for the split and the training order",
    "out": "run folder; empty: a new one under --runs-root",
    "runs_root": "where new run folders go",
    "device": "where to train: auto (a CUDA GPU, else an Apple GPU, else the CPU), cpu, cuda or mps",
    "precision": "auto (bf16 where the hardware runs it, else fp16 on a GPU and fp32 on a CPU), "
    "bf16, fp16 or fp32",
    "feature_cache": "keep the frozen backbone's embeddings on disk and reuse them",
    "cache_dir": "the embedding cache; empty: $TLAPP_CACHE or ~/.cache/tlapp",
    "memory_budget_gb": "GB of decoded images kept in memory; the rest are decoded on demand",
    "compile": "torch.compile the model on CUDA: slower start, faster long runs",
    "balance_classes": "on: weigh the loss so that rare classes count as much as common ones and "
    "keep the epoch with the best balanced accuracy; auto: on when the largest class has at least "
    "5 times the smallest's training images",
    "framing": "how an image fills the model's square: crop (the model's centre crop), whole "
    "(squeezed, nothing cut away) or auto (whole when a quarter or more of the images are at least "
    "1.5 times as long as wide)",
    "corrections": "a corrections file made on the page (relabelled and left-out images)",
    "time_budget": "the whole run within this time, as 90s, 2m or 1h: fine-tuning's stages and "
    "epochs are planned from a measurement of this machine (0: no limit)",
}


CHOICES = {
    "recipe": RECIPES,
    "balance_classes": BALANCE,
    "framing": FRAMINGS,
}  # the others are checked by make_config, as the page's are


DATA_SETTINGS = ["val_fraction", "test_fraction", "seed"]


MODEL_SETTINGS = [
    *("model", "weights", "freeze", "img_size", "batch_size"),
    *("recipe", "layer_decay", "augment", "device"),
]


# What a head on the frozen backbone's embeddings depends on (self-training).
EMBEDDING_SETTINGS = [
    *("model", "weights", "img_size", "batch_size", "head", "balance_classes"),
    *("device", "precision", "cache_dir"),
]


# What `train --resume` may change; the rest is the run's own.
RESUMABLE = [
    *("epochs", "patience", "device", "precision"),
    *("feature_cache", "cache_dir", "memory_budget_gb", "compile"),
]


def settings_args(p: argparse.ArgumentParser, names: list[str]) -> None:
    """A flag for each TrainConfig setting named. The flag's value stays None unless given:
    make_config then uses the dataclass's default (shown in --help), and --resume can tell
    which settings were asked for."""
    group = p.add_argument_group("settings (TrainConfig; a run keeps them in its run.json)")
    declared = {f.name: f for f in fields(TrainConfig)}
    for name in names:
        default, kind = declared[name].default, declared[name].type
        shown = f" (default: {default})" if default != "" else ""
        extra = {"choices": CHOICES[name]} if name in CHOICES else {}
        if kind == "bool":
            extra["action"] = argparse.BooleanOptionalAction
        else:
            types = {"int": int, "float": float, "int | str": int_or_str}
            # A duration ("2m") is read by make_config, as the page's is.
            extra["type"] = str if name == "time_budget" else types.get(kind, str)
        flag = "--" + name.replace("_", "-")
        text = SETTINGS_HELP.get(name, name.replace("_", " "))
        group.add_argument(flag, dest=name, help=text + shown, **extra)


def given_settings(args, names) -> dict:
    """The settings named on the command line."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def int_or_str(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def data_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "data",
        help="folder, train/val folder, .zip or CSV of path,label",
        **({"nargs": "?", "default": ""} if optional else {}),
    )


def json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON record on stdout (everything else goes to stderr)",
    )


def print_json(record) -> None:
    """One JSON document on stdout: numpy numbers as plain ones, NaN and infinities as null."""

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    print(json.dumps(plain(record), allow_nan=False))


def sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-it", type=int, default=100, help="training steps of the sweep (fewer if it diverges)"
    )
    p.add_argument("--start-lr", type=float, default=1e-7, help="the sweep's first learning rate")
    p.add_argument("--end-lr", type=float, default=10.0, help="the rate it would reach at the end")


def trainable_dataset(config, progress=None):
    """The config's dataset, or None after saying on stderr why it cannot be trained;
    `progress(what, done, total)` hears of the scanning."""
    from ..data import config_dataset

    dataset = config_dataset(config, progress=progress)
    if dataset.problems():
        print(f"cannot train: {dataset.problems()[0]}", file=sys.stderr)
        return None
    return dataset


def exit_code(status: str) -> int:
    """A training run's (or a student's) status as the exit code the README's table gives: 0
    done, 130 stopped (Ctrl-C or SIGTERM), 1 diverged or failed."""
    return {"done": 0, "stopped": 130}.get(status, 1)
