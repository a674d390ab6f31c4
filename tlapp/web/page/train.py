"""Step 3 of the page: the training settings, Train / Stop / Resume, and the live results.

`form.config_from_page` turns the widget values into the TrainConfig that Train starts; the
learning-rate finder under the settings (`lr_find.py`) sweeps that same config.

A gr.Timer polls the job's snapshot once a second and redraws the curves, the confusion matrix,
the per-class table and the calibration; it stops itself when the run has ended.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import gradio as gr
import pandas as pd

from ... import runs
from ...data import DataError
from ...train.slots import TrainingSlots
from ...views import (
    ACCURACY_COLORS,
    EPOCH_COLORS,
    STEP_COLORS,
    accuracy_frame,
    calibration_text,
    confusion_html,
    epoch_loss_frame,
    per_class_view,
    reliability_html,
    status_markdown,
    step_loss_frame,
)
from ..downloads import download_link
from ..sessions import Session, SessionRegistry
from ..settings import AppSettings
from .common import HINTS, user_errors
from .form import KNOB_INPUTS, MODEL_INPUTS, config_from_page
from .lr_find import lr_finder
from .methods import cross_validation, run_comparison


def _training_settings() -> dict:
    with gr.Accordion("Training settings (the defaults suit most cases)", open=False):
        with gr.Row():
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
        with gr.Row():
            batch_size = gr.Slider(
                1, 256, value=32, step=1, label="Batch size", info=HINTS["batch_size"]
            )
            lr = gr.Number(
                value=1e-3, label="Learning rate", info=HINTS["lr"], minimum=1e-7, maximum=0.9
            )
            with gr.Column():
                augment = gr.Checkbox(value=True, label="Light augmentation", info=HINTS["augment"])
                balance = gr.Checkbox(
                    value=False, label="Balance classes", info=HINTS["balance"], elem_id="balance"
                )
    return {
        "epochs": epochs,
        "img_size": img_size,
        "batch_size": batch_size,
        "lr": lr,
        "augment": augment,
        "balance": balance,
    }


def _results_panel() -> dict:
    """The live view of a run: curves, confusion matrix, per-class table, calibration."""
    with gr.Row(equal_height=True):
        plot = functools.partial(
            gr.LinePlot, x="epoch", color="series", x_title="epoch", color_title="", height=320
        )
        loss_plot = plot(
            y="loss",
            color_map=STEP_COLORS,
            elem_id="loss-plot",
            label="Training loss at each step (lower is better)",
        )
        epoch_plot = plot(
            y="loss",
            color_map=EPOCH_COLORS,
            elem_id="epoch-loss-plot",
            label="Epoch loss: train (blue), validation (orange)",
        )
        acc_plot = plot(
            y="value",
            color_map=ACCURACY_COLORS,
            y_lim=[0, 1],
            y_title="",
            elem_id="accuracy-plot",
            label="Accuracy (green), macro F1 (purple)",
        )
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Confusion matrix** (latest epoch, validation images)")
            matrix = gr.HTML(confusion_html(None, []), elem_id="confusion-matrix")
        with gr.Column():
            summary = gr.Markdown(elem_id="metrics-summary")
            per_class = gr.Dataframe(
                label="Per class: precision, recall, F1, support",
                value=pd.DataFrame(columns=["class", "precision", "recall", "f1", "support"]),
                interactive=False,
                elem_id="per-class",
                max_height=360,
            )
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Calibration** (latest epoch, validation images)")
            reliability = gr.HTML(reliability_html(None), elem_id="reliability-plot")
        calibration = gr.Markdown(elem_id="calibration")
    download = gr.HTML(visible=False, elem_id="download-run")
    return {
        "loss_plot": loss_plot,
        "epoch_plot": epoch_plot,
        "acc_plot": acc_plot,
        "matrix": matrix,
        "summary": summary,
        "per_class": per_class,
        "reliability": reliability,
        "calibration": calibration,
        "download": download,
    }


def poll_outputs(settings: AppSettings, session: Session | None):
    """Everything the page shows of the current run; the timer stops when the run has ended."""
    if not session or not session.job:
        return (
            gr.Markdown(),
            gr.LinePlot(),
            gr.LinePlot(),
            gr.LinePlot(),
            gr.HTML(),
            gr.Markdown(),
            gr.Dataframe(),
            gr.HTML(),
            gr.Timer(active=False),
            gr.Button(),
            gr.Button(),
            gr.Button(),
            gr.HTML(),
            gr.Markdown(),
        )
    state = session.job.snapshot()
    summary, table = per_class_view(state)
    x_lim = [0, max(state.epochs, 1)]
    download = gr.HTML(visible=False)
    if state.finished and state.has_model:
        link = download_link(settings, state.run_dir, "Download the model and results")
        download = gr.HTML(link, visible=True)
    plots = [
        gr.LinePlot() if frame is None else gr.LinePlot(frame, x_lim=x_lim)
        for frame in (step_loss_frame(state), epoch_loss_frame(state), accuracy_frame(state))
    ]
    return (
        status_markdown(state),
        *plots,
        confusion_html(state.confusion, state.classes),
        summary,
        table if table is not None else gr.Dataframe(),
        download,
        gr.Timer(active=not state.finished),
        gr.Button(interactive=state.finished),
        gr.Button(interactive=not state.finished),
        gr.Button(
            visible=state.finished and state.status != "done" and runs.resumable(state.run_dir)
        ),
        reliability_html(state.reliability),
        calibration_text(state),
    )


def train_step(
    settings: AppSettings,
    session: gr.State,
    data: dict,
    model: dict,
    slots: TrainingSlots,
    registry: SessionRegistry,
) -> dict:
    gr.Markdown("## 3 · Train", elem_classes="tl-step")
    knobs = _training_settings()
    inputs = [session, *(model[k] for k in MODEL_INPUTS), *(knobs[k] for k in KNOB_INPUTS)]
    lr_finder(settings, inputs, knobs["lr"])  # right below the learning-rate box it fills
    with gr.Row():
        train_btn = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
        baseline_btn = gr.Button("Instant baseline (no training)", elem_id="baseline-btn", scale=1)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", interactive=False, scale=1)
        resume_btn = gr.Button("Resume the run", elem_id="resume-btn", visible=False, scale=1)
    status = gr.Markdown("Load data, pick a model, then press **Train**.", elem_id="status")
    view = _results_panel()
    cross_validation(settings, inputs)
    run_comparison(session)
    timer = gr.Timer(1.0, active=False)
    start = _start_handler(registry, slots)
    outputs = [session, status, timer, train_btn, stop_btn]
    train_btn.click(start, inputs, outputs, api_name="train")
    # Prototypes: the nearest class mean of the frozen embeddings, a model in seconds.
    baseline = _start_handler(registry, slots, head="prototypes", freeze="all")
    baseline_btn.click(baseline, inputs, outputs, api_name="baseline")
    # ... and it runs by itself as soon as data is loaded: a number before anyone trains.
    data["summary"].change(_when_ready(baseline), inputs, outputs, api_visibility="private")
    stop_btn.click(stop, session, status, concurrency_limit=None, api_name="stop")
    resume_btn.click(_resume_handler(slots), session, [*outputs, resume_btn], api_name="resume")
    _poll_every_second(settings, session, timer, status, view, [train_btn, stop_btn, resume_btn])
    data["sample"].click(lambda: gr.Slider(value=64), None, knobs["img_size"])
    return {
        "status": status,
        "matrix": view["matrix"],
        "start": start,
        "inputs": inputs,
        "outputs": outputs,
    }


def _poll_every_second(
    settings: AppSettings,
    session: gr.State,
    timer: gr.Timer,
    status: gr.Markdown,
    view: dict,
    buttons: list,
) -> None:
    """Redraw the status, the results panel and the Train, Stop and Resume buttons (in that
    order: `poll_outputs` returns them so) on each tick of the timer while a run is shown."""
    train_btn, stop_btn, resume_btn = buttons
    polled = [
        status,
        *(view[k] for k in ("loss_plot", "epoch_plot", "acc_plot", "matrix")),
        view["summary"],
        view["per_class"],
        view["download"],
        timer,
        train_btn,
        stop_btn,
        resume_btn,
        view["reliability"],
        view["calibration"],
    ]
    timer.tick(
        functools.partial(poll_outputs, settings),
        session,
        polled,
        concurrency_limit=None,
        show_progress="hidden",
        api_name="poll",
    )


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
