"""How a run is staged: the model it starts from, what trains, and with what optimiser.

    setup = setup_model(config, classes=["ants", "bees", "wasps"])   # model, weights record, freeze plan, preprocessing
    optimizer = make_optimizer(setup.model, config, cuda=False, after_head=True)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=12, after_head=True)

timm's factories do the work: `create_model` (through `models.build_model`),
`resolve_model_data_config`, `create_optimizer_v2`, `create_scheduler_v2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from timm.data import resolve_model_data_config
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from ..config import IMBALANCED, TrainConfig
from ..data import Dataset
from ..freeze import FreezePlan, apply_freeze, freeze_plan
from ..models import Weights, build_model


@dataclass
class ModelSetup:
    model: torch.nn.Module
    weights: Weights  # what the backbone started from
    plan: FreezePlan  # which stages are frozen
    data_cfg: dict  # timm's preprocessing at the run's image size
    head_only: bool  # every stage frozen: train the classifier on cached embeddings


def setup_model(config: TrainConfig, classes: list[str], whole: bool = False) -> ModelSetup:
    """The model with its weights and freeze applied, on the CPU; `whole`: images enter whole
    (see `data_config`)."""
    model, weights = build_model(
        config.model, len(classes), config.weights, config.img_size, classes
    )
    plan = freeze_plan(model, config.freeze)
    apply_freeze(model, plan)
    # Distilled pairs (two classifiers) have no single head to fit on embeddings.
    single_head = isinstance(model.get_classifier(), torch.nn.Module)
    head_only = plan.depth == len(plan.stages) and single_head
    cfg = data_config(model, config.img_size, whole)
    return ModelSetup(model, weights, plan, cfg, head_only)


def make_optimizer(model: torch.nn.Module, config: TrainConfig, cuda: bool, after_head: bool):
    """AdamW over what trains. After a fitted head (two-phase), learning rates decay layer by
    layer towards the input (timm's `layer_decay`, over the model's own `group_matcher`): the
    layers that pretraining shaped most generally move least."""
    decay = config.layer_decay if after_head and config.layer_decay < 1 else None
    return create_optimizer_v2(
        model,
        opt="adamw",
        lr=config.lr,
        weight_decay=config.weight_decay,
        layer_decay=decay,
        **({"fused": True} if cuda else {}),
    )


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int, after_head: bool):
    """Cosine decay to lr/100 with a warm-up, stepped every update. After a fitted head the rate
    stays at `lr` throughout (a cosine whose floor is its start): the head already fits, so there
    is nothing to warm up, and a run cut short by its time budget or patience has not spent its
    epochs at a rate too small to move."""
    floor = config.lr if after_head else config.lr / 100
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=config.epochs,
        warmup_epochs=0 if after_head else min(config.warmup_epochs, config.epochs - 1),
        warmup_lr=config.lr / 100,
        min_lr=floor,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler


def imbalance(dataset: Dataset) -> float:
    """How many times the largest class's training images outnumber the smallest's."""
    counts = np.bincount(dataset.targets("train"), minlength=len(dataset.classes))
    return float(counts.max() / max(counts.min(), 1)) if len(counts) else 1.0


def balances(config: TrainConfig, dataset: Dataset) -> bool:
    """Whether the run weighs rare classes up and chooses its epoch on balanced accuracy."""
    if config.balance_classes == "auto":
        return imbalance(dataset) >= IMBALANCED
    return config.balance_classes == "on"


def class_weights(dataset: Dataset) -> torch.Tensor:
    """Inverse-frequency weights over the training split: n / (classes x count)."""
    counts = np.bincount(dataset.targets("train"), minlength=len(dataset.classes)).astype(
        np.float32
    )
    return torch.from_numpy(counts.sum() / (len(counts) * np.maximum(counts, 1)))


def data_config(model: torch.nn.Module, img_size: int, whole: bool = False) -> dict:
    """timm's preprocessing for this model (mean, std, interpolation, crop) at our image size.
    `whole`: the whole image squeezed to the square (timm's `squash` crop mode at crop_pct 1), so
    the predictor, the exports and timm's own transform frame images as training did."""
    cfg = resolve_model_data_config(model)
    cfg["input_size"] = (3, img_size, img_size)
    if whole:
        cfg.update(crop_pct=1.0, crop_mode="squash")
    return cfg


LONG = 1.5  # an image this many times as long as it is wide loses over 40% of it to a centre crop
LONG_SHARE = 0.25  # framing=auto is whole when at least this share of the training images is long


def long_share(dataset: Dataset) -> float:
    """The share of training images at least LONG times as long as they are wide."""
    sizes = dataset.split("train")[["width", "height"]].to_numpy(dtype=float)
    if not len(sizes):
        return 0.0
    ratio = sizes.max(1) / np.maximum(sizes.min(1), 1)
    return float((ratio >= LONG).mean())


def wants_whole(config: TrainConfig, dataset: Dataset) -> bool:
    """Whether the images enter the model whole rather than centre-cropped."""
    if config.framing == "auto":
        return long_share(dataset) >= LONG_SHARE
    return config.framing == "whole"


GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def greyscale(dataset: Dataset) -> bool:
    """Whether every training image is stored as greyscale: colour jitter then has nothing to
    change but brightness and contrast, and its saturation step is skipped."""
    modes = dataset.split("train")["mode"]
    return bool(len(modes)) and bool(modes.isin(GREY_MODES).all())
