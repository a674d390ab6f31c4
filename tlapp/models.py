"""Backbones: the catalogue, building a model with the right weights, and previewing a freeze.

    model, weights = build_model("resnet18", num_classes=3, weights="auto")  # weights.note
    plan = preview_freeze("resnet18", depth=2)   # the freeze plan, no weights allocated
    saved_bytes("resnet18", 3, freeze=2)         # what its run will write to disk

Freezing itself (stages, `freeze_plan`, `apply_freeze`, `set_train_mode`) is `tlapp.freeze`;
`freeze_plan`, `apply_freeze` and `stages` are re-exported here for older callers.
Weights are resolved from one string: `auto`, `pretrained`, `none`, a .safetensors/.pth file or
a previous run folder. Nothing here unpickles arbitrary objects (`weights_only=True`).
"""

from __future__ import annotations

import difflib
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import timm
import torch

from .catalogue import CATALOG, ModelError, catalog_choices  # noqa: F401  (re-exported)
from .config import DEFAULT_MODEL  # noqa: F401  (the catalogue's default, re-exported)

# apply_freeze and stages are re-exported (with freeze_plan): bench and tests import them here.
from .freeze import FreezePlan, apply_freeze, classifier_keys, freeze_plan, stages  # noqa: F401
from .runs import WEIGHTS as RUN_WEIGHTS
from .runs import RunError, read_config, read_state_dict, run_record


# ----------------------------------------------------------------------------- catalogue
@lru_cache(maxsize=256)
def param_count(name: str) -> int:
    """Parameters of a timm architecture (with its default head), built on the meta device."""
    check_name(name)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or not timm.is_model(name):
        close = (
            difflib.get_close_matches(name, timm.list_models(), n=5)
            or timm.list_models(f"*{name}*")[:5]
            if name
            else []
        )
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"'{name}' is not a timm model name.{hint}")
    return name


# ----------------------------------------------------------------------------- building
@dataclass(frozen=True)
class Weights:
    """What a model started from: `kind` is pretrained, random or file; `source` names the hub
    weights, the file or the seed policy; `note` is the sentence shown to the user."""

    kind: str
    source: str
    note: str
    head_kept: bool = False  # an earlier run's trained head, its classes being the same

    @property
    def pretrained(self) -> bool:
        return self.kind == "pretrained"

    @property
    def fell_back(self) -> bool:
        """Random weights that nobody asked for: pretrained ones could not be had."""
        return self.kind == "random" and self.source == "offline fallback"


def build_model(
    name: str,
    num_classes: int,
    weights: str = "auto",
    img_size: int | None = None,
    classes: list[str] | None = None,
) -> tuple[torch.nn.Module, Weights]:
    """A timm model with a fresh `num_classes` head, and a record of the weights it got.

    `weights`: auto (pretrained if it can be had, else random, said loudly), pretrained (strict),
    none, or a path to a weights file or a run folder (the backbone is loaded, the head is new).
    """
    model, record = _build(check_name(name), num_classes, weights, img_size)
    if record.kind == "file" and classes and run_classes(Path(weights)) == list(classes):
        load_head(model, Path(weights))  # continuing an earlier run on the same classes
        note = f"{record.note.removesuffix(' (new head)')}, with its trained head (same classes)"
        return model, Weights("file", record.source, note, head_kept=True)
    neutral_head(model)
    return model, record


def run_classes(path: Path) -> list[str] | None:
    """The class names of an earlier run folder, or None for anything else."""
    return (run_record(path) or {}).get("classes")


def load_head(model: torch.nn.Module, run_dir: Path) -> None:
    head = set(classifier_keys(model))
    state = read_state_dict(run_dir / RUN_WEIGHTS)
    model.load_state_dict({k: v for k, v in state.items() if k in head}, strict=False)


def _build(name: str, num_classes: int, weights: str, img_size: int | None):
    kwargs = {"num_classes": num_classes, **size_kwargs(name, img_size)}
    mode = (weights or "auto").strip()
    if mode == "none":
        random_init = Weights("random", "none", "random initialisation (as asked)")
        return timm.create_model(name, pretrained=False, **kwargs), random_init
    if mode in ("auto", "pretrained"):
        try:
            return create_pretrained(name, **kwargs)
        except HubTooOld:  # an install to mend, not a reason to train from random weights
            raise
        except Exception as err:  # offline, no weights published, hub error: all the same here
            if mode == "pretrained":
                raise ModelError(
                    f"Pretrained weights for '{name}' could not be loaded ({_short(err)}): "
                    "connect to the internet once or choose weights 'auto' or 'none'."
                ) from None
            note = (
                f"RANDOM INITIALISATION: pretrained weights for '{name}' could not be had "
                f"({_short(err)}). Accuracy will be much lower; connect once to download them."
            )
            model = timm.create_model(name, pretrained=False, **kwargs)
            return model, Weights("random", "offline fallback", note)
    model = timm.create_model(name, pretrained=False, **kwargs)
    source = load_backbone_weights(model, Path(mode))
    return model, Weights("file", mode, f"backbone from {source} (new head)")


def model_from_state_dict(name: str, state_dict: dict, **kwargs) -> torch.nn.Module:
    """A timm model whose every weight comes from `state_dict` (a saved run). It is built on
    the meta device, so no time goes on a random initialisation that loading replaces: that was
    most of the time to open a run. A model with buffers that are not saved (computed when it is
    built), or one that cannot be built without data, is built and loaded the usual way."""
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception:  # built with data-dependent steps: the usual way below says what is wrong
        model = None
    if model is not None:
        saved = set(model.state_dict())
        unsaved = {n for n, _ in model.named_buffers()} - saved
        if not unsaved and saved == set(state_dict):
            model.load_state_dict(state_dict, assign=True)
            return model
    model = timm.create_model(name, pretrained=False, **kwargs)
    model.load_state_dict(state_dict)
    return model


def load_run(run_dir: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained model of a run folder, in eval mode, and return it with its config."""
    info = read_config(run_dir)
    weights = Path(run_dir) / RUN_WEIGHTS
    if not weights.is_file():
        raise RunError(f"The run in '{run_dir}' has no saved model yet (no {RUN_WEIGHTS}).")
    model = model_from_state_dict(
        info["arch"],
        read_state_dict(weights),
        num_classes=len(info["classes"]),
        **info.get("model_kwargs", {}),
    )
    return model.to(device).eval(), info


def neutral_head(model: torch.nn.Module) -> None:
    """Zero the new classifier's last layer: every class starts equally likely, so the first
    loss is ln(classes) whatever the family's own head initialisation (some draw weights large
    enough that the first logits are huge and training spends its first steps undoing them)."""
    heads = model.get_classifier()
    for head in heads if isinstance(heads, tuple) else (heads,):
        layers = [m for m in head.modules() if getattr(m, "weight", None) is not None]
        if layers:
            with torch.no_grad():
                layers[-1].weight.zero_()
                if getattr(layers[-1], "bias", None) is not None:
                    layers[-1].bias.zero_()


HUB_MINIMUM = "1.2.1"  # constants.is_offline_mode(); get_session() with httpx's follow_redirects


class HubTooOld(ModelError):
    """The installed huggingface_hub lacks what the weight download uses."""


def require_hub() -> None:
    """Raise HubTooOld, a sentence saying how to mend it, when huggingface_hub is older than
    HUB_MINIMUM (checked by what this module uses, not by the version string)."""
    import huggingface_hub
    from huggingface_hub import constants

    if not (hasattr(constants, "is_offline_mode") and hasattr(huggingface_hub, "get_session")):
        raise HubTooOld(
            f"huggingface_hub {huggingface_hub.__version__} is too old to fetch pretrained "
            f"weights (tlapp needs {HUB_MINIMUM} or later): run "
            f"pip install -U 'huggingface_hub>={HUB_MINIMUM}', or choose weights 'none'."
        )


def create_pretrained(name: str, **kwargs) -> tuple[torch.nn.Module, Weights]:
    """Default pretrained weights: from the local hub cache if there, else from the hub.

    The hub (or the mirror HF_ENDPOINT names) is tried only when it answers within seconds;
    offline, huggingface_hub would otherwise spend most of a minute retrying before giving up."""
    require_hub()
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg else None
    cached = _cached_weights(hub_id) if hub_id else None
    if cached:
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs
        )
        return model, Weights("pretrained", hub_id, f"pretrained ({hub_id}, from the local cache)")
    if hub_id and not _hub_reachable(hub_id):
        raise ModelError("offline, and the weights are not in the local hub cache")
    model = timm.create_model(name, pretrained=True, **kwargs)
    return model, Weights("pretrained", hub_id or name, f"pretrained ({hub_id or name})")


def _cached_weights(hub_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def _hub_reachable(hub_id: str, timeout: float = 3.0) -> bool:
    """Whether the hub answers a HEAD for the repo's weights within `timeout` seconds, asked
    as huggingface_hub asks: its endpoint (HF_ENDPOINT), its HTTP session (proxies from
    HTTPS_PROXY and the like, a client set with `set_client_factory`) and its offline mode
    (HF_HUB_OFFLINE: no request at all). Any answer but a server error counts: a missing or
    gated repo is then reported by the download itself. The request runs in a thread that is
    waited for at most `timeout` + 1 seconds, so a name lookup that hangs cannot hold it up."""
    from huggingface_hub import constants, get_session, hf_hub_url

    if constants.is_offline_mode():
        return False
    url = hf_hub_url(hub_id, "model.safetensors")
    answers: list[int] = []

    def ask() -> None:
        try:
            response = get_session().head(url, timeout=timeout, follow_redirects=False)
            answers.append(response.status_code)
        except Exception:  # no connection, a refusing proxy, a timeout: all unreachable
            pass

    asking = threading.Thread(target=ask, daemon=True, name="tlapp-hub-check")
    asking.start()
    asking.join(timeout + 1)
    return bool(answers) and answers[0] < 500


def size_kwargs(name: str, img_size: int | None) -> dict:
    """Models with a fixed input size (ViTs) are built for the image size we train at."""
    if not img_size:
        return {}
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.fixed_input_size or cfg.input_size[-1] == img_size:
        return {}
    return {"img_size": img_size}


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def load_backbone_weights(model: torch.nn.Module, path: Path) -> str:
    """Load everything but the classifier from a weights file or a run folder."""
    if path.is_dir():
        weights_file = path / RUN_WEIGHTS
        if not weights_file.exists():
            raise ModelError(f"'{path}' is not a run folder: it has no {RUN_WEIGHTS}.")
        arch = (run_record(path) or {}).get("arch")
        if arch and arch != model.pretrained_cfg.get("architecture"):
            raise ModelError(
                f"The run in '{path.name}' trained '{arch}', not "
                f"'{model.pretrained_cfg.get('architecture')}': pick that model."
            )
        path = weights_file
    elif not path.is_file():
        raise ModelError(
            f"Weights '{path}' are neither auto, pretrained, none, a file nor a run folder."
        )
    elif path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise ModelError(f"'{path.name}' is not a .safetensors or .pth weights file.")
    head = set(classifier_keys(model))
    state = {k: v for k, v in read_state_dict(path).items() if k not in head}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head]
    if missing:
        raise ModelError(
            f"'{path.name}' does not fit this architecture ({len(missing)} weights "
            f"missing, e.g. {missing[0]}): pick the model it was trained for."
        )
    return path.name


# ----------------------------------------------------------------------------- freeze previews
@lru_cache(maxsize=32)
def _meta_model(name: str, num_classes: int) -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes)


def preview_freeze(name: str, depth: int | str, num_classes: int = 2) -> FreezePlan:
    """The freeze plan of an architecture without allocating its weights (for the UI)."""
    return freeze_plan(_meta_model(check_name(name), num_classes), depth)


def saved_bytes(name: str, num_classes: int, freeze: int | str) -> int:
    """What a run of `name` writes, estimated before anything is built (on the meta device: no
    memory, no initialisation): its fp32 weights in model.safetensors and, when stages train,
    the resume checkpoint's weights and AdamW's two moments of each trainable parameter."""
    model = _meta_model(check_name(name), num_classes)
    plan = freeze_plan(model, freeze)
    weights = 4 * sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    return weights if plan.depth == len(plan.stages) else 2 * weights + 8 * plan.trainable
