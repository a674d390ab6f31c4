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
KNOB_INPUTS = ("epochs", "img_size", "batch_size", "lr", "augment", "balance")


def config_from_page(settings: AppSettings, state: Session | None, *values) -> TrainConfig:
    """The TrainConfig that the Train button's inputs (after the session) describe."""
    choice, custom, weights, weights_file, weights_path, freeze = values[:6]
    epochs, img_size, batch_size, lr, augment, balance = values[6:]
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
        val_fraction=state.dataset.val_fraction,  # the split the data was loaded with
        test_fraction=state.dataset.test_fraction,
        runs_root=str(state.workdir / "runs"),
        cache_dir=str(settings.home / "cache"),
        corrections=str(corrections.file) if len(corrections) else "",
        device="cpu" if settings.zero_gpu else "auto",
    )
