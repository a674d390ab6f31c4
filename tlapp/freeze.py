"""Freezing a backbone by its own stages: which ones are frozen, and what still trains.

    plan = freeze_plan(model, depth=2)     # which stages are frozen, how many params train
    apply_freeze(model, plan)              # requires_grad off on the frozen stages
    set_train_mode(model)                  # model.train(); frozen stages stay in eval mode
    set_train_mode(model, norm_still=True) # ... and every BatchNorm keeps its statistics
    print(plan.describe())                 # 'Frozen 2 of 5 stages (...); training ... and the head'

Stages are the backbone's own groups as timm reports them (`model.group_matcher(coarse=True)`),
counted from the input. The classifier is never a stage: at the deepest freeze only it trains.
`models` builds the model (and previews a plan by architecture name); this module only reads and
sets which of its parameters train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from timm.models import group_parameters

from .catalogue import ModelError


@dataclass(frozen=True)
class Stage:
    label: str  # e.g. "layer3" or "stem: conv1 + bn1"
    params: tuple[str, ...]  # parameter names as in model.named_parameters()
    size: int  # number of weights


@dataclass(frozen=True)
class FreezePlan:
    stages: tuple[Stage, ...]  # every freezable stage, from the input
    depth: int  # how many of them are frozen
    trainable: int  # parameters that will train
    total: int

    @property
    def frozen(self) -> tuple[Stage, ...]:
        return self.stages[: self.depth]

    def describe(self) -> str:
        """One line for the user: what is frozen and what trains."""
        n = len(self.stages)
        if self.depth == 0:
            what = f"Nothing frozen: all {n} stages and the head train"
        elif self.depth == n:
            span = f"{self.stages[0].label} … {self.stages[-1].label}"
            what = f"All {n} stages frozen ({span}): only the new head trains"
        else:
            what = (
                f"Frozen {self.depth} of {n} stages ({', '.join(s.label for s in self.frozen)}); "
                f"training {', '.join(s.label for s in self.stages[self.depth :])} and the head"
            )
        return f"{what}. {self.trainable:,} of {self.total:,} parameters will train."


def classifier_keys(model: torch.nn.Module) -> list[str]:
    """State-dict keys of the classifier (the part that is always new and always trains)."""
    names = classifier_modules(model)
    return [k for k in model.state_dict() if any(k.startswith(n + ".") for n in names)]


def classifier_modules(model: torch.nn.Module) -> list[str]:
    cls = model.pretrained_cfg.get("classifier") or "head"
    return [cls] if isinstance(cls, str) else list(cls)


def stages(model: torch.nn.Module) -> list[Stage]:
    """The backbone's stages from the input, as timm groups them; the classifier is left out.

    Grouping parameters (not modules) keeps tensors owned by the model itself, such as a ViT's
    cls_token and pos_embed, in the stage timm puts them in (the stem)."""
    head = set(classifier_keys(model))
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    groups = group_parameters(model, model.group_matcher(coarse=True)).values()
    out = []
    for i, names in enumerate(groups):
        names = tuple(n for n in names if n not in head)
        if names:
            out.append(
                Stage(_stage_label(names, first=i == 0), names, sum(sizes[n] for n in names))
            )
    return out


def _stage_label(names: tuple[str, ...], first: bool) -> str:
    """A short readable name: the modules' shared path ('layer3', 'blocks.11'), else a list."""
    paths = [n.split(".")[:-1] or [n] for n in names]
    common = os.path.commonprefix(paths)
    if common:
        label = ".".join(common[:2])
    else:
        prefixes = list(
            dict.fromkeys(
                ".".join(p[:2] if len(p) > 1 and p[1].isdigit() else p[:1]) for p in paths
            )
        )
        label = " + ".join(prefixes[:3]) + (" …" if len(prefixes) > 3 else "")
    return f"stem: {label}" if first and not label.startswith("stem") else label


def resolve_depth(model: torch.nn.Module, depth: int | str) -> int:
    n = len(stages(model))
    if isinstance(depth, str):
        if depth.strip().lower() == "all":
            return n
        if not depth.strip().lstrip("-").isdigit():
            raise ModelError(f"Freeze depth '{depth}' must be a number from 0 to {n}, or 'all'.")
        depth = int(depth)
    if not 0 <= depth <= n:
        raise ModelError(
            f"Freeze depth {depth} is out of range: this model has {n} stages, "
            f"so use 0 to {n} (or 'all')."
        )
    return depth


def freeze_plan(model: torch.nn.Module, depth: int | str) -> FreezePlan:
    all_stages = tuple(stages(model))
    depth = resolve_depth(model, depth)
    frozen = sum(s.size for s in all_stages[:depth])
    total = sum(p.numel() for p in model.parameters())
    return FreezePlan(all_stages, depth, total - frozen, total)


def apply_freeze(model: torch.nn.Module, plan: FreezePlan) -> None:
    """Turn off gradients of the frozen stages; `set_train_mode` keeps their BatchNorm still."""
    frozen = {n for stage in plan.frozen for n in stage.params}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)


def set_train_mode(model: torch.nn.Module, norm_still: bool = False) -> None:
    """model.train(), except that any module whose parameters are all frozen runs in eval mode,
    so frozen BatchNorm statistics do not move and frozen dropout does not fire. `norm_still`:
    every BatchNorm keeps its statistics, trained or not (its scale and shift still learn)."""
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        frozen = params and not any(p.requires_grad for p in params)
        if frozen or (norm_still and isinstance(module, torch.nn.modules.batchnorm._BatchNorm)):
            module.eval()
