"""Step 2 of the page: the Train, baseline, Stop and Resume buttons, the training settings
(in the advanced panel) and their handlers.

`form.config_from_page` turns the widget values into the TrainConfig that Train starts; the
learning-rate finder under the settings (`lr_find.py`) sweeps that same config; `results.py`
shows the run.
"""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from ...config import TrainConfig
from ...data import DataError
from ...train.slots import TrainingSlots
from ..sessions import Session, SessionRegistry
from ..settings import AppSettings
from .common import HINTS, user_errors
from .form import KNOB_INPUTS, MODEL_INPUTS, TIME_BUDGETS, config_from_page
from .results import poll_every_second


def training_settings() -> dict:
    """The knobs of training; call inside the advanced panel."""
    gr.Markdown("**Training** (the defaults suit most cases)")
    epochs = gr.Slider(
        1, 100, value=5, step=1, label="Epochs", info=HINTS["epochs"], elem_id="epochs"
    )
    img_size = gr.Slider(
        32,
        512,
        value=224,
        step=16,
        label="Image size (pixels)",
        info=HINTS["img_size"],
        elem_id="img-size",
    )
    batch_size = gr.Slider(1, 256, value=32, step=1, label="Batch size", info=HINTS["batch_size"])
    lr = gr.Number(
        value=TrainConfig.lr, label="Learning rate", info=HINTS["lr"], minimum=1e-7, maximum=0.9
    )
    augment = gr.Checkbox(
        value=TrainConfig.augment, label="Light augmentation", info=HINTS["augment"]
    )
    balance = gr.Dropdown(
        [("Automatic", "auto"), ("On", "on"), ("Off", "off")],
        value="auto",
        label="Balance classes",
        info=HINTS["balance"],
        elem_id="balance",
    )
    budget = gr.Dropdown(
        [(label, value) for value, label in TIME_BUDGETS.items()],
        value="auto",
        label="Time budget",
        info=HINTS["time_budget"],
        elem_id="time-budget",
    )
    return {
        "epochs": epochs,
        "img_size": img_size,
        "batch_size": batch_size,
        "lr": lr,
        "augment": augment,
        "balance": balance,
        "time_budget": budget,
    }


def train_controls() -> dict:
    """The buttons under the model choice, Train first and largest, and the run's status."""
    train_btn = gr.Button("Train", variant="primary", elem_id="train-btn", size="lg")
    with gr.Row():
        baseline_btn = gr.Button(
            "Quick model (no training)", elem_id="baseline-btn", size="sm", min_width=120
        )
        stop_btn = gr.Button(
            "Stop", variant="stop", elem_id="stop-btn", interactive=False, size="sm", min_width=80
        )
    resume_btn = gr.Button("Resume the run", elem_id="resume-btn", visible=False, size="sm")
    status = gr.Markdown(elem_id="status")
    return {
        "status": status,
        "train_btn": train_btn,
        "baseline_btn": baseline_btn,
        "stop_btn": stop_btn,
        "resume_btn": resume_btn,
    }


def train_inputs(session: gr.State, model: dict, knobs: dict) -> list:
    """The Train button's inputs: the session, then the model's and the knobs' widgets."""
    return [session, *(model[k] for k in MODEL_INPUTS), *(knobs[k] for k in KNOB_INPUTS)]


def wire_training(
    settings: AppSettings,
    session: gr.State,
    parts: dict,
    inputs: list,
    slots: TrainingSlots,
    registry: SessionRegistry,
) -> dict:
    """Train, the instant baseline (also after every load), Stop, Resume and the timer that
    redraws the result. `parts` holds the controls, the results and the data step's widgets."""
    timer = poll_every_second(settings, session, parts)
    start = _start_handler(registry, slots)
    outputs = [session, parts["status"], timer, parts["train_btn"], parts["stop_btn"]]
    parts["train_btn"].click(start, inputs, outputs, api_name="train")
    # Prototypes: the nearest class mean of the frozen embeddings, a model in seconds.
    baseline = _start_handler(registry, slots, head="prototypes", freeze="all")
    parts["baseline_btn"].click(baseline, inputs, outputs, api_name="baseline")
    # ... and it runs by itself as soon as data is loaded: a number before anyone trains.
    parts["data_summary"].change(_when_ready(baseline), inputs, outputs, api_visibility="private")
    parts["stop_btn"].click(stop, session, parts["status"], concurrency_limit=None, api_name="stop")
    resume_outputs = [*outputs, parts["resume_btn"]]
    parts["resume_btn"].click(_resume_handler(slots), session, resume_outputs, api_name="resume")
    return {"start": start, "inputs": inputs, "outputs": outputs}


# The Train button's inputs after the session, in the order `start` takes them.
def _start_handler(registry: SessionRegistry, slots: TrainingSlots, **overrides):
    """Train's handler; `overrides` change the page's settings (the instant baseline's)."""

    @user_errors
    def start(state: Session | None, *values):
        # Imported here: the page is served before torch loads (a background thread loads it).
        from ...train import Job

        config = replace(config_from_page(registry.settings, state, *values), **overrides)
        if state.job and state.job.running:
            if not state.job.short:
                raise DataError("A run is already training: stop it first.")
            state.job.stop()  # the instant baseline gives way to what was asked for now
        if state.dataset is not None:  # room for the run's files, estimated before it starts
            from ...models import saved_bytes

            classes = len(state.dataset.classes)
            registry.make_room(state, saved_bytes(config.model, classes, config.freeze))
        else:
            registry.make_room(state)
        if state.dataset is None:
            raise DataError(
                "This machine ran short of space and cleared the files of idle sessions, "
                "yours among them: load your data again, then train."
            )
        state.job = Job(config, state.dataset, slots=slots).start()
        return (
            state,
            "**Starting** · loading the model…",
            gr.Timer(active=True),
            gr.Button(interactive=False),
            gr.Button(interactive=True),
        )

    return start


def _when_ready(baseline):
    """The instant baseline after a load, only when the data can be trained and nothing runs;
    otherwise nothing happens (the data step already says what is wrong)."""

    def run(state: Session | None, *values):
        idle = (state, gr.Markdown(), gr.Timer(), gr.Button(), gr.Button())
        if not state or not state.dataset or state.dataset.problems():
            return idle
        if state.job and state.job.running:
            return idle
        try:
            return baseline(state, *values)
        except gr.Error:  # e.g. weights "from a file" not chosen yet: Train will say so
            return idle

    return run


def _resume_handler(slots: TrainingSlots):
    @user_errors
    def resume(state: Session | None):
        from ...train import Job, resume_config

        if not state or not state.job or state.job.running:
            raise DataError("There is no stopped run to resume.")
        run_dir = state.job.snapshot().run_dir
        # The run's own data and corrections, as its run.json records them, not what is
        # loaded on the page now.
        state.job = Job(resume_config(run_dir), slots=slots, resume=True).start()
        return (
            state,
            "**Resuming** from the last finished epoch…",
            gr.Timer(active=True),
            gr.Button(interactive=False),
            gr.Button(interactive=True),
            gr.Button(visible=False),
        )

    return resume


def stop(state: Session | None):
    if state and state.job and state.job.running:
        state.job.stop()
        return "**Stopping** after the current batch…"
    return gr.Markdown()
