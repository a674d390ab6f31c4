"""The live result beside the Train button: accuracy in words, the accuracy curve and the
confusion matrix; the loss curves, per-class scores and calibration in a panel below. The
run's status sits under the Train button (`train.train_controls`).

Nothing here is shown before it has content: the panel appears with the first result, and
the steps after training (`later`, built by `build_ui`) when there is a model to use.

A gr.Timer polls the job's snapshot once a second and redraws all of it; it stops itself when
the run has ended.
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from ... import runs
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
    run_details_markdown,
    status_markdown,
    step_loss_frame,
)
from ..downloads import download_link
from ..sessions import Session
from ..settings import AppSettings
from .methods import cross_validation, run_comparison

WAITING = (
    "Your results appear here. Add images (step 1): a first model is made from them in "
    "seconds; then press **Train** to teach it properly."
)

_plot = functools.partial(
    gr.LinePlot, x="epoch", color="series", x_title="epoch", color_title="", visible=False
)


def results_panel() -> dict:
    """Column 3: how well the model does now (the run's status is under the Train button)."""
    gr.Markdown("## 3 · How well it works", elem_classes="tl-step")
    waiting = gr.Markdown(WAITING, elem_id="waiting")
    with gr.Column(visible=False, elem_id="live-result") as live:
        summary = gr.Markdown(elem_id="metrics-summary")
        acc_plot = _plot(
            y="value",
            color_map=ACCURACY_COLORS,
            y_lim=[0, 1],
            y_title="",
            height=230,
            elem_id="accuracy-plot",
            label="How often it is right on validation images, epoch by epoch",
        )
        gr.Markdown(
            "**Right and wrong answers** on the validation images: green is right, red is "
            "confused. Click a number to see its images.",
            elem_classes="tl-explain",
        )
        matrix = gr.HTML(elem_id="confusion-matrix")
        download = gr.HTML(visible=False, elem_id="download-run")
    return {
        "waiting": waiting,
        "live": live,
        "summary": summary,
        "acc_plot": acc_plot,
        "matrix": matrix,
        "download": download,
    }


def details_panel(settings: AppSettings, session: gr.State, inputs: list) -> dict:
    """Below the loop: the rest of the run's figures, how sure the accuracy is, and the
    visitor's runs side by side; `inputs` are the Train button's."""
    with gr.Accordion(
        "More about this run: learning curves, scores per class, confidence",
        open=False,
        visible=False,
        elem_id="run-details",
    ) as details:
        with gr.Row():
            loss_plot = _plot(
                y="loss",
                color_map=STEP_COLORS,
                height=260,
                elem_id="loss-plot",
                label="Error on each batch of training images (lower is better)",
            )
            epoch_plot = _plot(
                y="loss",
                color_map=EPOCH_COLORS,
                height=260,
                elem_id="epoch-loss-plot",
                label="Error per epoch: training (blue), validation (orange)",
            )
        with gr.Row():
            per_class = gr.Dataframe(
                label="Per class: precision (when it says this class, how often it is right), "
                "recall (how many of this class it finds), F1 (both), support (images)",
                value=pd.DataFrame(columns=["class", "precision", "recall", "f1", "support"]),
                interactive=False,
                elem_id="per-class",
                max_height=360,
            )
            with gr.Column():
                calibration = gr.Markdown(elem_id="calibration")
                reliability = gr.HTML(elem_id="reliability-plot")
        setup = gr.Markdown(elem_id="run-setup")
        cross_validation(settings, inputs)
        run_comparison(session)
    return {
        "details": details,
        "loss_plot": loss_plot,
        "epoch_plot": epoch_plot,
        "per_class": per_class,
        "reliability": reliability,
        "calibration": calibration,
        "setup": setup,
    }


# What the timer redraws, in this order (the /poll API returns them so: keep the first 14).
POLLED = (
    "status",
    "loss_plot",
    "epoch_plot",
    "acc_plot",
    "matrix",
    "summary",
    "per_class",
    "download",
    "timer",
    "train_btn",
    "stop_btn",
    "resume_btn",
    "reliability",
    "calibration",
    "live",
    "details",
    "setup",
    "later",
    "waiting",
)


def poll_outputs(settings: AppSettings, session: Session | None):
    """Everything the page shows of the current run; the timer stops when the run has ended."""
    if not session or not session.job:
        return (*(gr.update() for _ in POLLED[:8]), gr.Timer(active=False), *_unchanged(10))
    state = session.job.snapshot()
    summary, table = per_class_view(state)
    x_lim = [0, max(state.epochs, 1)]
    download = gr.HTML(visible=False)
    if state.finished and state.has_model:
        link = download_link(settings, state.run_dir, "Download the model and results")
        download = gr.HTML(link, visible=True)
    # A curve needs two points: one alone (the instant baseline's) would be an empty chart.
    curves = len(state.history) > 1
    plots = [
        gr.LinePlot(frame, x_lim=x_lim, visible=True)
        if frame is not None and (curves or name == "step")
        else gr.LinePlot(visible=False)
        for name, frame in (
            ("step", step_loss_frame(state)),
            ("epoch", epoch_loss_frame(state)),
            ("accuracy", accuracy_frame(state)),
        )
    ]
    shown = bool(state.history)
    resumable = state.finished and state.status != "done" and runs.resumable(state.run_dir)
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
        gr.Button(visible=resumable),
        reliability_html(state.reliability) if state.reliability is not None else "",
        calibration_text(state),
        gr.Column(visible=shown),
        gr.Accordion(visible=shown),
        run_details_markdown(state),
        gr.Column(visible=state.has_model),
        gr.Markdown(visible=not shown),
    )


def _unchanged(n: int) -> list:
    return [gr.update() for _ in range(n)]


def poll_every_second(settings: AppSettings, session: gr.State, parts: dict) -> gr.Timer:
    """A timer that redraws `parts` (every name in POLLED but the timer) while a run is shown."""
    timer = gr.Timer(1.0, active=False)
    timer.tick(
        functools.partial(poll_outputs, settings),
        session,
        [timer if name == "timer" else parts[name] for name in POLLED],
        concurrency_limit=None,
        show_progress="hidden",
        api_name="poll",
    )
    return timer
