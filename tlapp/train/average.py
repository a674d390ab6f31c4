"""A running mean of the weights during fine-tuning, from where it began.

    average = WeightAverage(model)        # as fine-tuning begins: the mean of one model
    average.add(model)                    # after each fine-tuning epoch
    with average.swapped_in(model):       # the model holds the mean while it is validated and
        ...                               # saved; the weights training goes on from come back

Fine-tuning a few epochs on a few hundred images moves the weights by chance as much as by
signal, and the epoch kept is chosen on a small validation share. The mean of the weights since
fine-tuning began (phase one's model counted once, then each epoch's) is one model of the same
shape that sits between the two: it keeps most of what fine-tuning gains and loses less when
fine-tuning goes astray (Izmailov et al. 2018, stochastic weight averaging; Wortsman et al.
2022, WiSE-FT). The BatchNorm statistics stay those of phase one while the mean is taken
(Trainer.norm_still), so the mean needs no new estimate of them.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, count: int = 1):
        self.mean = {k: v.detach().clone() for k, v in _floats(model).items()}
        self.count = count  # models averaged so far
        self.trained: dict | None = None  # the training weights, while the mean is swapped in

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        self.count += 1
        for name, value in _floats(model).items():
            self.mean[name].lerp_(value, 1 / self.count)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """The mean in the model for the block; the training weights back afterwards."""
        self.trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.mean, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(self.trained)
            self.trained = None


def _floats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What averages: every floating-point tensor (BatchNorm's batch counters do not)."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
