"""The training configuration: one frozen dataclass, built and checked in one function.

    config = make_config(data="photos/", model="resnet18", freeze=3, epochs=5)
    asdict(config)     # what the run folder's run.json records

Light on purpose (no torch, no timm): the CLI and the page build configs before anything heavy
is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

DEFAULT_MODEL = "resnet18"
RECIPES = ("two-phase", "one-phase")
BALANCE = ("auto", "on", "off")
IMBALANCED = 5  # the largest class this many times the smallest: balance_classes=auto is on
HEADS = ("logistic", "prototypes")
FRAMINGS = ("auto", "crop", "whole")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs to be reproduced; saved in the run folder's `run.json`."""

    data: str
    model: str = DEFAULT_MODEL
    weights: str = "auto"  # auto | pretrained | none | path to weights or a run folder
    freeze: int | str = 0  # stages frozen from the input; "all" trains only the head
    epochs: int = 5
    img_size: int = 224
    batch_size: int = 32
    lr: float = 3e-4  # fine-tuning: the learning rate of the layers next to the head
    recipe: str = "two-phase"  # two-phase: fit the head on frozen features, then fine-tune;
    #                            one-phase: train head and unfrozen stages together from the start
    layer_decay: float = 0.7  # fine-tuning: each stage nearer the input learns this much slower
    head: str = "logistic"  # phase one's head: logistic regression, or the nearest class mean
    #                         of normalised embeddings (prototypes: no training at all)
    # two-phase: the model validated (and kept) after each fine-tuning epoch is the mean of the
    # weights since fine-tuning began (train/average.py)
    average_weights: bool = True
    patience: int = 0  # two-phase: stop fine-tuning after this many epochs without a better one
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    # Off by default, as is augmentation: fine-tuning a few epochs under a fitted head, both
    # cost test accuracy on the sets in bench/domains.py (the README's "Accuracy").
    label_smoothing: float = 0.0
    augment: bool = False  # light: horizontal flip, mild colour jitter, on the evaluation framing
    val_fraction: float = 0.2  # of each class, for choosing, when the data has no val/ folder
    test_fraction: float = 0.15  # of each class, scored once at the end, when there is no test/
    seed: int = 0
    out: str = ""  # run folder; empty: a new folder under runs_root
    runs_root: str = "runs"
    device: str = "auto"  # auto (cuda, else mps, else cpu) | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 if native, else fp16 on a GPU) | bf16 | fp16 | fp32
    feature_cache: bool = True  # keep the frozen backbone's embeddings on disk, reuse them
    cache_dir: str = ""  # embedding cache; empty: $TLAPP_CACHE or ~/.cache/tlapp
    memory_budget_gb: float = 4.0  # decoded images kept in memory; the rest decoded on demand
    compile: bool = False  # torch.compile the model on CUDA: slower start, faster long runs
    # on: weigh the loss so that rare classes count as much as common ones, and keep the epoch
    # with the best balanced accuracy; auto: on when the classes are imbalanced (recipes).
    balance_classes: str = "auto"
    # Seconds for the whole run (0: no limit): fine-tuning is planned to fit (train/budget.py).
    # Given as a number of seconds or a duration: "90s", "2m", "1h", "1m30s".
    time_budget: float = 0.0
    # How an image fills the model's square input. crop: the model's own evaluation crop (timm's
    # centre crop); whole: the whole image squeezed to the square, nothing cut away; auto: whole
    # when many images are long and thin (recipes.wants_whole), so that a centre crop would cut
    # off their ends, where a defect may lie.
    framing: str = "auto"
    corrections: str = ""  # a corrections file made from the page (relabelled, left-out images)


def make_config(**values) -> TrainConfig:
    """Build and check a TrainConfig from loose values (widgets, CLI); raises ValueError."""
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"Unknown settings: {', '.join(sorted(unknown))}.")
    clean = {k: v for k, v in values.items() if v is not None}
    for name, cast in (
        ("epochs", int),
        ("img_size", int),
        ("batch_size", int),
        ("warmup_epochs", int),
        ("seed", int),
        ("lr", float),
        ("weight_decay", float),
        ("label_smoothing", float),
        ("layer_decay", float),
        ("patience", int),
        ("val_fraction", float),
        ("test_fraction", float),
    ):
        if name in clean:
            clean[name] = cast(clean[name])
    if isinstance(clean.get("time_budget"), str):
        clean["time_budget"] = parse_duration(clean["time_budget"])
    if isinstance(clean.get("balance_classes"), bool):  # a checkbox, or a run.json of before
        clean["balance_classes"] = "on" if clean["balance_classes"] else "off"
    if isinstance(clean.get("freeze"), float):
        clean["freeze"] = int(clean["freeze"])
    config = TrainConfig(**clean)
    _check_ranges(config)
    return config


def _check_ranges(c: TrainConfig) -> None:
    rules = [
        (c.epochs >= 1, "Epochs must be at least 1."),
        (32 <= c.img_size <= 1024, "Image size must be between 32 and 1024 pixels."),
        (c.batch_size >= 1, "Batch size must be at least 1."),
        (0 < c.lr < 1, "Learning rate must be between 0 and 1 (try 0.0003)."),
        (0 < c.val_fraction < 1, "The validation fraction must be between 0 and 1 (try 0.2)."),
        (
            0 <= c.test_fraction < 1,
            "The test fraction must be at least 0 (no test images) and below 1 (try 0.15).",
        ),
        (
            c.val_fraction + c.test_fraction <= 0.8,
            "The validation and test fractions together must leave at least a fifth of the "
            "images to train on (try 0.2 and 0.15).",
        ),
        (0 <= c.label_smoothing < 1, "Label smoothing must be between 0 and 1."),
        (c.device in ("auto", "cpu", "cuda", "mps"), "Device must be auto, cpu, cuda or mps."),
        (
            c.precision in ("auto", "bf16", "fp16", "fp32"),
            "Precision must be auto, bf16, fp16 or fp32.",
        ),
        (c.framing in FRAMINGS, "Framing must be auto, crop or whole."),
        (c.memory_budget_gb >= 0, "The memory budget cannot be negative."),
        (c.recipe in RECIPES, f"Recipe must be one of {', '.join(RECIPES)}."),
        (c.head in HEADS, f"Head must be one of {', '.join(HEADS)}."),
        (c.time_budget >= 0, "The time budget cannot be negative (0: no limit)."),
        (c.balance_classes in BALANCE, f"Balance classes must be one of {', '.join(BALANCE)}."),
        (c.patience >= 0, "Patience cannot be negative (0: never stop early)."),
        (0 < c.layer_decay <= 1, "Layer decay must be above 0 and at most 1 (1: no decay)."),
    ]
    for ok, message in rules:
        if not ok:
            raise ValueError(message)


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "2m", "1h" or "1m30s"; a ValueError that says how otherwise."""
    match = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or not match:
        raise ValueError(
            f"A time budget is a number of seconds or a duration such as 90s, 2m or 1m30s, "
            f"not {text!r}."
        )
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds
