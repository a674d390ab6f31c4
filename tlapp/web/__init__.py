"""The browser app: settings, visitors' sessions, uploads, and the page (Gradio Blocks).

| module | what it holds |
|---|---|
| `settings` | `AppSettings` from the environment: where files live, limits, local folders |
| `sessions` | `Session` (one visitor's folder, data, job, model) and `SessionRegistry` |
| `uploads` | what the browser sent (zip, folder files, typed path) → a `Dataset` |
| `page/` | one module per step (`data`, `model`, `train`, `insight`, `use`), `assets` (CSS, JS) |

Nothing here imports torch, timm or ONNX when the page is built: they take seconds to
load, so handlers import the engine when they run, and `serve` loads it in the background once
the page is answered.
"""

import importlib
import threading
import time

from .page import build_ui, launch_kwargs, machine_notice
from .settings import AppSettings

__all__ = ["AppSettings", "build_ui", "launch_kwargs", "serve", "warm_up"]

# What the handlers import: training, prediction, the learning-rate finder, the methods.
ENGINE = ("tlapp.train.job", "tlapp.predict", "tlapp.train.lr_find", "tlapp.methods")


def serve(settings: AppSettings | None = None) -> None:
    """Build the page and serve it until interrupted: what `python app.py` and `tlapp app` do.
    Without settings, they come from the environment (`AppSettings.from_env`)."""
    settings = settings or AppSettings.from_env()
    print(f"* {machine_notice(settings)}", flush=True)  # for whoever runs it, not every visitor
    demo = build_ui(settings).queue(default_concurrency_limit=4)
    demo.launch(prevent_thread_lock=True, **launch_kwargs(settings))
    # Started once the server listens, not before: the imports would compete for the CPU with
    # building and serving the page.
    threading.Thread(target=warm_up, name="tlapp-warm-up", daemon=True).start()
    demo.block_thread()


def warm_up() -> None:
    """Import the engine (seconds of torch and timm) so that a visitor's first Train or
    prediction does not wait for it, and build the default model's freeze plan, which every
    page asks for when it opens."""
    start = time.perf_counter()
    for name in ENGINE:
        importlib.import_module(name)
    from ..config import DEFAULT_MODEL
    from ..models import preview_freeze

    preview_freeze(DEFAULT_MODEL, 0)
    print(
        f"* Ready to train (the engine loaded in {time.perf_counter() - start:.1f} s)", flush=True
    )
