"""The learning-rate finder on the page: a sweep, its plot, and the suggestion in one click."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from ...data import DataError
from ...train import StopTraining
from ..sessions import Session
from ..settings import AppSettings
from .common import user_errors
from .form import config_from_page


def lr_finder(settings: AppSettings, train_inputs: list, lr_box: gr.Number) -> None:
    """Below the training settings; `train_inputs` are the Train button's (session first)."""
    with gr.Accordion("Not sure of the learning rate? Find one", open=False):
        gr.Markdown(
            "Trains briefly with a learning rate that grows at every step and plots the loss, "
            "as fastai's `lr_find`. Pick a rate where the loss still falls steeply, before it "
            "turns up; the suggestion does that for you. It takes a minute or two on a CPU."
        )
        with gr.Row():
            find = gr.Button("Find a learning rate", elem_id="lr-find-btn", scale=2)
            use = gr.Button("Use it", visible=False, elem_id="lr-use-btn", scale=1)
        said = gr.Markdown(elem_id="lr-suggestion")
        plot = gr.LinePlot(
            x="log10 lr",
            y="loss",
            x_title="learning rate (log10)",
            y_title="smoothed loss",
            height=280,
            elem_id="lr-plot",
            label="Loss as the learning rate grows",
        )
    suggestion = gr.State(None)
    find.click(_finder(settings), train_inputs, [plot, said, use, suggestion], api_name="lr_find")
    use.click(lambda value: value, suggestion, lr_box, api_name="use_lr")


def _finder(settings: AppSettings):

    @user_errors
    def run(state: Session | None, *values, progress=gr.Progress()):
        # Imported here: the page is served before torch loads (a background thread loads it).
        from ...train.lr_find import find_lr

        if state and state.job and state.job.running:
            raise DataError("A run is training: find a learning rate when it has ended.")
        config = config_from_page(settings, state, *values)

        def show(what, done, total):
            progress((done, total), desc=what)

        try:
            finding = find_lr(config, state.dataset, progress=show)
        except StopTraining as stop:
            raise DataError(stop.message) from None
        table = finding.table()
        frame = pd.DataFrame({"log10 lr": np.log10(table["lr"]), "loss": table["loss"]})
        text = f"**Suggested learning rate: {finding.suggestion:.1e}** ({finding.how})."
        label = f"Use {finding.suggestion:.1e}"
        return frame, text, gr.Button(value=label, visible=True), float(f"{finding.suggestion:.1e}")

    return run
