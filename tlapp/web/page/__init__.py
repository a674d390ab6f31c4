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
from .assets import CSS, PAGE_JS, theme
from .beyond import beyond_step
from .data import data_step, share_settings, wire_data
from .insight import insight_step, wire_insight
from .lr_find import lr_finder
from .model import model_settings, model_step, preselect_freeze, wire_model
from .results import details_panel, results_panel
from .train import train_controls, train_inputs, training_settings, wire_training
from .use import take_away, use_step

INTRO = (
    "# Teach a computer to tell your pictures apart\n"
    "Give it some images of each kind, press **Train**, and see how often it is right. "
    "Your images stay on this machine."
)


def build_ui(settings: AppSettings) -> gr.Blocks:
    """The page: the loop on one screen (images → model and Train → result), then the steps
    that need a model, in tabs that appear once there is one."""
    registry, slots = SessionRegistry(settings), TrainingSlots(settings.max_jobs)
    # Gradio's own copies of uploads are deleted after two hours, checked every half hour.
    with gr.Blocks(title="tlapp · train an image classifier", delete_cache=(1800, 7200)) as demo:
        session = gr.State(None, delete_callback=registry.discard)
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Row(elem_id="loop", equal_height=False):
            with gr.Column(scale=4, min_width=300, elem_id="panel-data"):
                data = data_step(registry, session)
            with gr.Column(scale=3, min_width=280, elem_id="panel-train"):
                model, controls, knobs, shares, inputs = _train_column(settings, session)
            with gr.Column(scale=5, min_width=320, elem_id="panel-result"):
                view = results_panel()
                cell = gr.Textbox(visible="hidden", elem_id="cm-cell")  # PAGE_JS: a click
        with gr.Column(elem_id="panel-details"):
            view |= details_panel(settings, session, inputs)
        wire_data(registry, session, data, shares)
        wire_model(session, model)
        with gr.Column(visible=False, elem_id="after-training") as later:
            with gr.Tabs(elem_id="later-steps") as tabs:
                wrong = _later_steps(settings, session, inputs, cell)
        parts = {**view, **controls, "later": later, "data_summary": data["summary"]}
        train = wire_training(settings, session, parts, inputs, slots, registry)
        wire_insight(session, data, train, wrong)
        data["sample"].click(lambda: gr.Slider(value=64), None, knobs["img_size"])
        # A click on the matrix shows its images in the tab that holds them.
        cell.change(lambda: gr.Tabs(selected="wrong"), None, tabs, api_visibility="private")
        _wire_session(demo, registry, session, model)
    return demo


def _train_column(settings: AppSettings, session: gr.State):
    """Column 2: the model, Train, and every other setting in one collapsed panel."""
    gr.Markdown("## 2 · Train", elem_classes="tl-step")
    model = model_step()
    controls = train_controls()
    with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
        model |= model_settings(settings)
        knobs = training_settings()
        inputs = train_inputs(session, model, knobs)
        lr_finder(settings, inputs, knobs["lr"])  # right below the learning-rate box it fills
        shares = share_settings()
    return model, controls, knobs, shares, inputs


def _later_steps(settings: AppSettings, session: gr.State, inputs: list, cell) -> dict:
    """The tabs that need a model; returns "where is it wrong?", which `wire_insight` connects
    once Train's handler exists (its "train again" button starts it)."""
    with gr.Tab("Where is it wrong?", id="wrong", elem_id="tab-wrong"):
        wrong = insight_step(cell)
    with gr.Tab("Try it", id="try", elem_id="tab-try"):
        use_step(settings, session)
    with gr.Tab("Take it away", id="away", elem_id="tab-away") as away:
        take_away(settings, session, away)
    with gr.Tab("Beyond fine-tuning", id="beyond", elem_id="tab-beyond"):
        beyond_step(settings, inputs)
    return wrong


def _wire_session(demo: gr.Blocks, registry: SessionRegistry, session: gr.State, model: dict):
    """A session of its own for each visitor, and the freeze sentence once timm has loaded."""

    def open_session(request: gr.Request):
        return registry.open(request.session_hash if request else None)

    def close_session(request: gr.Request):
        registry.close(request.session_hash if request else None)

    named = [model["choice"], model["custom"], session]
    demo.load(open_session, None, session, api_visibility="private").then(
        preselect_freeze,
        named,
        [model["freeze"], model["freeze_note"]],
        show_progress="hidden",
        api_visibility="private",
    )
    demo.unload(close_session)


def machine_notice(settings: AppSettings) -> str:
    """One line on how this machine shares its training, for whoever runs the app: `serve`
    prints it in the log (visitors see their place in line in the status when they wait)."""
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
        "theme": theme(),
        "css": CSS,
        "head": PAGE_JS,
        "allowed_paths": [str(settings.home / "sessions")],  # random per-visitor folder names
        "app_kwargs": {"routes": download_routes(settings)},  # runs zipped as they download
    }
