"""A learning rate for fine-tuning, found the way fastai's `lr_find` finds one.

    finding = find_lr(make_config(data="photos/", model="resnet18", freeze=2))
    finding.suggestion            # e.g. 3.2e-04: the `lr` to train with
    finding.lrs, finding.losses   # the sweep: plot the loss against log10(lr)
    finding.how                   # one sentence for the user: the rule behind the suggestion

A mock run: the model trains for `num_it` batches (the epochs repeat when there are fewer) while
the learning rate grows exponentially from `start_lr` to `end_lr`. The loss is smoothed as
fastai does (an exponential moving average, beta 0.98, debiased) and the sweep ends early once
the smoothed loss passes four times its minimum or is no longer finite. The weights are put back afterwards and nothing
is written to a run folder; only the embedding cache fills, as a run would fill it.

In the two-phase recipe the sweep starts from the fitted head, as phase two does: the learning
rate is for fine-tuning from there, and a head still to be fitted would shape the curve. Per-group
ratios (the layer-wise `lr_scale` of layer decay) are kept: the swept rate is that of the layers
next to the head, which is what `TrainConfig.lr` means. Head only has no learning rate to find.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..config import TrainConfig
from ..data import Dataset, config_dataset
from ..freeze import set_train_mode
from .callbacks import Progress
from .hardware import is_out_of_memory
from .loop import Trainer

BETA = 0.98  # fastai's AvgSmoothLoss
DIVERGED = 4  # the sweep ends when the smoothed loss passes this many times its minimum
HEAD_ONLY = (
    "With every stage frozen only the head trains, and it is fitted to convergence without a "
    "learning rate: there is no learning rate to find. Unfreeze a stage to fine-tune."
)


@dataclass
class LRFinding:
    lrs: list[float]  # the rate of the layers next to the head, at each step
    losses: list[float]  # the smoothed training loss after each step
    suggestion: float
    how: str  # one sentence: how the suggestion was chosen

    def table(self) -> pd.DataFrame:
        """The sweep as columns `lr` and `loss`, one row a step."""
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses})


def find_lr(
    config: TrainConfig,
    dataset: Dataset | None = None,
    stop_event: threading.Event | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10,
    num_it: int = 100,
) -> LRFinding:
    """Sweep the learning rate for `config` and suggest one (fastai's `valley`).

    `progress(what, done, total)` hears about decoding, embeddings and the sweep. Raises
    ValueError for head only or a hopeless sweep, StopTraining when `stop_event` is set."""
    if str(config.freeze) == "all":  # said before anything is loaded
        raise ValueError(HEAD_ONLY)
    if not 0 < start_lr < end_lr:
        raise ValueError("The sweep must start at a learning rate above 0 and below its end.")
    num_it = max(num_it, 6)  # as fastai: fewer points say nothing
    if dataset is None:
        dataset = config_dataset(config)
    dataset.check()
    callbacks = [Progress(progress)] if progress else []
    with tempfile.TemporaryDirectory(prefix="tlapp-lr-find-") as tmp:
        trainer = Trainer(config, dataset, Path(tmp), callbacks, stop_event or threading.Event())
        if trainer.head_only:
            raise ValueError(HEAD_ONLY)
        trainer.prepare()
        from_head = trainer.fits_head  # phase one fits the head before fine-tuning
        if from_head:
            trainer.fit_head()
        lrs, losses = _sweep_fitting_memory(trainer, start_lr, end_lr, num_it)
    what = (
        "fine-tuning from the fitted head"
        if from_head
        else "training the head and the unfrozen stages together"
    )
    # No full stop: callers set it in a sentence of their own, often in brackets.
    how = f"valley: the middle of the longest stretch where the loss kept falling, {what}"
    return LRFinding(lrs, losses, suggest(lrs, losses, num_it), how)


def _sweep_fitting_memory(trainer: Trainer, start_lr, end_lr, num_it):
    try:
        return sweep(trainer, start_lr, end_lr, num_it)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise ValueError(
            f"Out of memory at batch size {trainer.batch_size}: lower the batch size or the "
            "image size, or pick a smaller model."
        ) from None


def sweep(
    trainer: Trainer, start_lr: float, end_lr: float, num_it: int
) -> tuple[list[float], list[float]]:
    """Train up to `num_it` batches at exponentially growing rates; (lrs, smoothed losses).

    The model's weights (and BatchNorm statistics) are as before when it returns or raises."""
    groups = trainer.optimizer.param_groups
    # timm's schedulers scale each group by `lr_scale` (layer decay); so does the sweep.
    scales = [group.get("lr_scale", 1.0) for group in groups]
    lrs, losses, average, best = [], [], 0.0, math.inf
    set_train_mode(trainer.model, trainer.norm_still)
    # Closed first: the epoch's prefetching thread ends before the weights are put back.
    with _put_back(trainer), contextlib.closing(_batches(trainer, num_it)) as batches:
        for i, (inputs, targets) in enumerate(batches):
            lr = start_lr * (end_lr / start_lr) ** (i / num_it)  # fastai's SchedExp
            for group, scale in zip(groups, scales):
                group["lr"] = lr * scale
            # The run's own step (its loss, and fp16's GradScaler); the loss is read every step:
            # the sweep stops as soon as it runs away.
            average = BETA * average + (1 - BETA) * trainer.update(inputs, targets).item()
            smoothed = average / (1 - BETA ** (i + 1))
            trainer.report("Finding a learning rate", i + 1, num_it)
            if not math.isfinite(smoothed):
                break
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > DIVERGED * best:
                break
    if not lrs:
        raise ValueError(
            f"The loss was not finite even at a learning rate of {start_lr:.0e}: check the "
            "weights, or try precision fp32."
        )
    return lrs, losses


@contextlib.contextmanager
def _put_back(trainer: Trainer):
    """The weights as they were when the sweep ends or fails."""
    saved = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
    try:
        yield
    finally:
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.model.load_state_dict(saved)


def _batches(trainer: Trainer, num_it: int) -> Iterator:
    """`num_it` training batches, going through the epochs again when one is not enough."""
    given, epoch = 0, 1
    while given < num_it:
        before = given
        for batch in trainer.source.train_batches(epoch):
            yield batch
            given += 1
            if given == num_it:
                return
        if given == before:
            raise ValueError("There are no training images to find a learning rate on.")
        epoch += 1


def suggest(lrs: list[float], losses: list[float], num_it: int) -> float:
    """fastai's choice: `valley` without the first tenth of the sweep (the loss has hardly
    moved there) and the last five points (the climb); all of it when too little is left."""
    low, high = num_it // 10, len(lrs) - 5
    if high - low < 2:
        low, high = 0, len(lrs)
    return valley(lrs[low:high], losses[low:high], num_it)[0]


def valley(lrs: list[float], losses: list[float], num_it: int) -> tuple[float, tuple]:
    """fastai's `valley`: the longest run of falling losses (a longest decreasing subsequence,
    quadratic in the points) and the learning rate halfway along it, with its point on the
    curve: (lr, (lr, loss)). `num_it` is unused, as in fastai (one signature for every rule)."""
    n = len(losses)
    run = [1] * n  # longest decreasing subsequence ending at each point
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[max_end] < run[i]:
                max_end = i
                max_start = max_end - run[max_end]
    sections = (max_end - max_start) / 3
    index = max_start + int(sections) + int(sections / 2)
    # fastai's start can be -1 (a run from the first point): clamp, not wrap to the end.
    index = min(max(index, 0), n - 1)
    return float(lrs[index]), (float(lrs[index]), float(losses[index]))
