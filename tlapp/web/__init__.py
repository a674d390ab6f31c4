"""The browser app: settings, visitors' sessions, uploads, and the page (Gradio Blocks).

| module | what it holds |
|---|---|
| `settings` | `AppSettings` from the environment: where files live, limits, local folders |
| `sessions` | `Session` (one visitor's folder, data, job, model) and `SessionRegistry` |
| `uploads` | what the browser sent (zip, folder files, typed path) → a `Dataset` |
| `page/` | one module per step (`data`, `model`, `train`, `insight`, `use`), `assets` (CSS, JS) |
"""

from .page import build_ui, launch_kwargs
from .settings import AppSettings

__all__ = ["AppSettings", "build_ui", "launch_kwargs", "serve"]


def serve(settings: AppSettings | None = None) -> None:
    """Build the page and serve it until interrupted: what `python app.py` and `tlapp app` do.
    Without settings, they come from the environment (`AppSettings.from_env`)."""
    settings = settings or AppSettings.from_env()
    build_ui(settings).queue(default_concurrency_limit=4).launch(**launch_kwargs(settings))
