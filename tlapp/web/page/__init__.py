"""The page, one module per step; each builds its part of the layout and wires its handlers.

    demo = build_ui(settings)
    demo.launch(**launch_kwargs(settings))

Handlers call the engine (data, train, predict) and render snapshots with `tlapp.views`; the
engine never calls back into the page.
"""

from __future__ import annotations

import gradio as gr

from ...train.slots import TrainingSlots
from ..downloads import download_routes
from ..sessions import SessionRegistry
from ..settings import AppSettings
from .assets import CSS, PAGE_JS
from .beyond import beyond_step
from .data import data_step
from .insight import insight_step
from .model import freeze_view, model_step
from .train import train_step
from .use import use_step


def build_ui(settings: AppSettings) -> gr.Blocks:
    registry, slots = SessionRegistry(settings), TrainingSlots(settings.max_jobs)
    # Gradio's own copies of uploads are deleted after two hours, checked every half hour.
    with gr.Blocks(title="tlapp · train an image classifier", delete_cache=(1800, 7200)) as demo:
        session = gr.State(None, delete_callback=registry.discard)
        gr.Markdown(
            "# tlapp — train an image classifier\n"
            "Give it a folder of images sorted into one subfolder per class, pick a model, "
            "press **Train**, and watch it learn. Your images stay on this machine.",
        )
        gr.Markdown(machine_notice(settings), elem_id="machine-notice")
        data = data_step(settings, session, registry)
        model = model_step(settings, session)
        train = train_step(settings, session, data, model, slots, registry)
        insight_step(session, data, train)
        use_step(settings, session)
        beyond_step(settings, train["inputs"])

        def open_session(request: gr.Request):
            return registry.open(request.session_hash if request else None)

        def close_session(request: gr.Request):
            registry.close(request.session_hash if request else None)

        freeze = [model["choice"], model["custom"], model["freeze"], session]
        demo.load(open_session, None, session, api_visibility="private").then(
            freeze_view,
            freeze,
            [model["freeze"], model["freeze_note"]],
            show_progress="hidden",
            api_visibility="private",
        )
        demo.unload(close_session)
    return demo


def machine_notice(settings: AppSettings) -> str:
    """One line on how this machine shares its training (set by whoever runs the app)."""
    jobs = settings.max_jobs
    line = (
        f"This machine trains {jobs} run{'s' * (jobs != 1)} at a time (`TLAPP_MAX_JOBS`); "
        "other runs wait in line and show their place and an estimate. Head-only runs and the "
        "instant baseline take seconds and have a line of their own, never behind a fine-tune."
    )
    if settings.zero_gpu:
        line += (
            " This Space runs on ZeroGPU, which lends a GPU only for the length of one request, "
            "while training runs in the background for minutes: it trains on the CPU here. For "
            "GPU training, choose dedicated GPU hardware in the Space's settings."
        )
    return line


def launch_kwargs(settings: AppSettings) -> dict:
    """Everything `Blocks.launch` needs: where to serve, and the page's look."""
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "root_path": settings.root_path or None,
        "share": settings.share,
        "theme": gr.themes.Soft(),
        "css": CSS,
        "head": PAGE_JS,
        "allowed_paths": [str(settings.home / "sessions")],  # random per-visitor folder names
        "app_kwargs": {"routes": download_routes(settings)},  # runs zipped as they download
    }
