"""A run planned to fit a time budget, from a few seconds' measurement of this machine.

    plan = plan_run(config, dataset)      # before the Trainer is built; raises DataError when
    config = plan.config                  # even phase one would not fit
    plan.text   # "1,800 images, 2 CPU cores: the last 2 stages train, 4 epochs, about 1 m 50 s."

The budget covers the whole run: what the process did before planning (`spent`: start-up,
imports, reading the folder), this measurement, decoding and embedding every image (phase one),
fine-tuning, and the end (the kept model scored on the test images, the run saved). The
measurement times, on one batch of the training images, a forward pass of the whole model
(what embedding and validation cost) and a training step with the last 1, 2, 3… stages unfrozen (what a fine-tuning epoch costs at each depth). The plan unfreezes the
most stages that still leave `MIN_EPOCHS` epochs (never more than the run's own `freeze` allows,
never more epochs than it asks for), fewer epochs on the last stage when that is all that fits,
and head only when not even that does. The Trainer keeps to the budget as it goes: it stops
fine-tuning when the next epoch, as long as the last one, would end past it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import TrainConfig
from ..data import DataError, Dataset
from ..freeze import apply_freeze, freeze_plan, set_train_mode
from .batches import to_model_input
from .embedder import Embedder
from .state import duration

MIN_EPOCHS = 3  # fewer fine-tuning epochs than this rarely beat phase one: train fewer stages
SAMPLE = 16  # images in the measured batch
SAFETY = 0.9  # of the time left after phase one: estimates of seconds are not exact
CANDIDATES = 3  # depths measured: the last 1, 2 and 3 stages trained
WARM_UP = 3  # forward passes before the timed ones: a fresh process sets up its kernels
REPEATS = 2  # timed passes of each kind, the fastest kept: a busy machine slows some
SAVING_S = 3.0  # writing the run folder at the end (weights, checkpoint, run.json)


@dataclass(frozen=True)
class Speeds:
    """Seconds per image measured on this machine."""

    decode: float  # reading and resizing one image
    forward: float  # the whole model, evaluation mode (embedding, validation)
    train_step: dict[int, float]  # a training step by freeze depth (stages frozen from the input)
    stages: int  # of the model
    measured_in: float  # seconds the measurement itself took


@dataclass(frozen=True)
class Plan:
    config: TrainConfig  # the run's settings with the planned freeze depth and epochs
    text: str  # what was chosen and why, for the page and run.json
    seconds: float  # the estimated whole run
    ending: float  # seconds kept for after the last epoch: the test pass and saving


def plan_run(config: TrainConfig, dataset: Dataset, spent: float = 0.0) -> Plan:
    """The freeze depth and epochs that fit `config.time_budget` seconds on this machine, of
    which `spent` have gone already (the process starting, the folder read)."""
    speeds = measure(config, dataset)
    counts = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
    per_image = speeds.decode + speeds.forward
    phase_one = spent + speeds.measured_in + sum(counts.values()) * per_image
    ending = counts["test"] * per_image + SAVING_S  # a fine-tuned model embeds the test set again
    budget = config.time_budget
    if phase_one + SAVING_S > budget:
        raise DataError(
            f"Even the first phase (every image decoded and embedded once) needs about "
            f"{duration(phase_one)} here, more than the time budget of {duration(budget)}: give "
            f"a budget of at least {duration(phase_one * 1.2)}, or fewer or smaller images."
        )
    left = (budget - phase_one - ending) * SAFETY
    depth, epochs, fine_tuning = choose(config, speeds, counts, left)
    planned = replace(config, freeze="all" if epochs == 0 else depth, epochs=max(epochs, 1))
    total = phase_one + fine_tuning + (ending if epochs else SAVING_S)
    trained = 0 if epochs == 0 else speeds.stages - depth
    return Plan(planned, describe(dataset, trained, epochs, total, budget), total, ending)


def choose(
    config: TrainConfig, speeds: Speeds, counts: dict[str, int], left: float
) -> tuple[int, int, float]:
    """(freeze depth, epochs, seconds): the most stages with MIN_EPOCHS epochs, else the last
    stage for as many epochs as fit (0: none fit)."""
    fits = [(speeds.stages, 0, 0.0)]  # head only
    for depth in sorted(speeds.train_step):  # most stages trained first
        per_epoch = counts["train"] * speeds.train_step[depth] + counts["val"] * speeds.forward
        epochs = min(config.epochs, int(left // per_epoch))
        fits.append((depth, epochs, epochs * per_epoch))
        if epochs >= min(MIN_EPOCHS, config.epochs):
            return fits[-1]
    return max(fits, key=lambda fit: (fit[1], fit[0]))


def describe(dataset: Dataset, trained: int, epochs: int, seconds: float, budget: float) -> str:
    """What the plan chose, in a sentence: "Time budget 2 m, 1,800 images, 2 CPU cores: …"."""
    images, cores = len(dataset.samples), os.cpu_count() or 1
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cores} CPU cores"
    head = f"Time budget {duration(budget)}, {images:,} images, {where}: "
    if epochs == 0:
        return head + (
            "only the new head is fitted (phase one): not one fine-tuning epoch would fit in "
            f"the time left. About {duration(seconds)}."
        )
    stages = "the last stage" if trained == 1 else f"the last {trained} stages"
    return (
        head + f"{stages} fine-tuned for {epochs} epochs after the head, about {duration(seconds)}."
    )


@torch.no_grad()
def _timed(run, cuda: bool) -> float:
    start = time.perf_counter()
    run()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(config: TrainConfig, dataset: Dataset) -> Speeds:
    """Seconds per image for decoding, a forward pass and a training step at each candidate
    depth, on one batch of training images."""
    started = time.perf_counter()
    embedder = Embedder.build(replace(config, freeze=0), dataset)
    model, cuda = embedder.model, embedder.cuda
    # A seeded draw over the whole split: the first files are of one class, whose images can
    # be smaller or larger than most.
    train = dataset.split("train")
    drawn = np.sort(np.random.default_rng(0).permutation(len(train))[:SAMPLE])
    paths = train["path"].iloc[drawn].tolist()
    targets = dataset.targets("train")[drawn]
    start = time.perf_counter()
    feed = embedder.feed("sample", paths, targets, train=True)
    decode = time.perf_counter() - start
    pixels = torch.stack([feed.view(i, augmented=config.augment) for i in range(len(paths))])
    cfg = embedder.data_cfg
    x = to_model_input(pixels, cfg["mean"], cfg["std"], embedder.device, embedder.channels_last)
    model.eval()
    with torch.inference_mode(), embedder.autocast:
        for _ in range(WARM_UP):  # the first passes set up kernels: not what an epoch costs
            model(x)
        forward = min(_timed(lambda: model(x), cuda) for _ in range(REPEATS))
    stages = len(freeze_plan(model, 0).stages)
    depths = [d for d in range(stages - 1, stages - 1 - CANDIDATES, -1) if _allowed(config, d)]
    if depths:  # the first backward pass sets up its kernels too
        _train_step_seconds(model, x, depths[-1], embedder)
    steps = {depth: _train_step_seconds(model, x, depth, embedder) for depth in depths}
    n = len(paths)
    return Speeds(
        decode / n,
        forward / n,
        {d: s / n for d, s in steps.items()},
        stages,
        time.perf_counter() - started,
    )


def _allowed(config: TrainConfig, depth: int) -> bool:
    """The run's own freeze setting is the least that stays frozen ("all": head only)."""
    return depth >= 0 and config.freeze != "all" and depth >= int(config.freeze)


def _train_step_seconds(model, x, depth: int, embedder: Embedder) -> float:
    apply_freeze(model, freeze_plan(model, depth))
    set_train_mode(model)

    def step():
        with torch.enable_grad(), embedder.autocast:
            model(x).float().sum().backward()

    seconds = min(_timed(step, embedder.cuda) for _ in range(REPEATS))
    model.zero_grad(set_to_none=True)
    return seconds
