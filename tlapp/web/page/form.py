"""The Train form: the page's widget values, in the order its handlers receive them, read into
the TrainConfig that Train (and the learning-rate finder, k-fold, self-training) start with."""

from __future__ import annotations

from ...config import TrainConfig, make_config
from ...data import DataError
from ..sessions import Session
from ..settings import AppSettings
from ..uploads import weights_choice
from .model import model_name

MODEL_INPUTS = ("choice", "custom", "weights", "weights_file", "weights_path", "freeze")
KNOB_INPUTS = ("epochs", "img_size", "batch_size", "lr", "augment", "balance", "time_budget")
TIME_BUDGETS = {  # the page's choices: a value make_config reads, and its label
    "auto": "Automatic",
    "1m": "1 minute",
    "2m": "2 minutes",
    "5m": "5 minutes",
    "10m": "10 minutes",
    "30m": "30 minutes",
    "0": "No limit",
}
AUTO_BUDGET = {"cpu": "2m", "gpu": "10m"}  # a run that fits a workshop's attention


def config_from_page(settings: AppSettings, state: Session | None, *values) -> TrainConfig:
    """The TrainConfig that the Train button's inputs (after the session) describe."""
    choice, custom, weights, weights_file, weights_path, freeze = values[:6]
    epochs, img_size, batch_size, lr, augment, balance, budget = values[6:]
    if not state or not state.dataset:
        raise DataError("Load your images first (step 1), or use the sample digits.")
    state.dataset.check()
    corrections = state.corrections()
    return make_config(
        data=state.dataset.root,
        model=model_name(choice, custom),
        weights=weights_choice(weights, weights_file, weights_path, settings),
        freeze=int(freeze),
        epochs=epochs,
        img_size=img_size,
        batch_size=batch_size,
        lr=lr,
        augment=augment,
        balance_classes=balance,
        time_budget=_budget(budget, settings),
        val_fraction=state.dataset.val_fraction,  # the split the data was loaded with
        test_fraction=state.dataset.test_fraction,
        runs_root=str(state.workdir / "runs"),
        cache_dir=str(settings.home / "cache"),
        corrections=str(corrections.file) if len(corrections) else "",
        device="cpu" if settings.zero_gpu else "auto",
    )


def _budget(choice: str, settings: AppSettings) -> str:
    """The page's time budget; automatic: longer on a GPU, which does more in a minute."""
    if choice != "auto":
        return choice
    import torch  # the engine is loaded by the time Train is pressed

    gpu = torch.cuda.is_available() and not settings.zero_gpu
    return AUTO_BUDGET["gpu" if gpu else "cpu"]
