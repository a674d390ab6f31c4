"""Under the live results: how sure is this accuracy? (k-fold cross-validation of the head),
and the visitor's runs side by side."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import runs
from ...data import DataError
from ...metrics import SMALL, small_validation
from ..sessions import Session
from ..settings import AppSettings
from .common import user_errors
from .form import config_from_page


def cross_validation(settings: AppSettings, train_inputs: list) -> None:
    """`train_inputs` are the Train button's (session first): the same model and weights."""
    with gr.Accordion("How sure is this accuracy? (k-fold cross-validation)", open=False):
        gr.Markdown(
            f"With fewer than {SMALL} validation images per class, one image moves the accuracy "
            "by whole points. This fits the head on frozen features five times, each time "
            "holding out a different fifth of your labelled images, and reports the mean and "
            "the spread. It takes seconds once the images have been read once."
        )
        run = gr.Button("Estimate with 5 folds", elem_id="kfold-btn")
        said = gr.Markdown(elem_id="kfold-result")
        table = gr.Dataframe(
            value=pd.DataFrame(columns=["class", "recall", "± across folds"]),
            interactive=False,
            label="Recall per class across the folds",
            elem_id="kfold-table",
        )
    run.click(_estimator(settings), train_inputs, [said, table], api_name="kfold")


def _estimator(settings: AppSettings):
    @user_errors
    def estimate(state: Session | None, *values, progress=gr.Progress()):
        # Imported here: the page is served before torch loads (a background thread loads it).
        from ...methods import cross_validate

        if state and state.job and state.job.running:
            raise DataError("A run is training: estimate when it has ended.")
        config = config_from_page(settings, state, *values)
        cv = cross_validate(config, state.dataset, 5, lambda *p: progress(p[1:], desc=p[0]))
        return f"**{cv.describe()}** {_why(state)}", _recall_table(cv)

    return estimate


def _why(state: Session) -> str:
    if small_validation(state.dataset):
        return (
            f"Your validation set has fewer than {SMALL} images in some class, so this "
            "estimate says more than the single split."
        )
    return "Your validation set is large enough that the single split is already a fair guide."


def _recall_table(cv) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "class": cv.per_class["class"],
            "recall": cv.per_class["recall_mean"].round(3),
            "± across folds": cv.per_class["recall_std"].round(3),
        }
    )


def run_comparison(session: gr.State) -> None:
    """Every run this visitor made, side by side, so a method is picked with numbers in view."""
    with gr.Accordion("Compare your runs", open=False):
        show = gr.Button("Compare", elem_id="compare-btn")
        table = gr.Dataframe(
            value=pd.DataFrame(columns=[SHOWN.get(c, c) for c in runs.COMPARE_COLUMNS]),
            interactive=False,
            label="Every run with a saved model: best validation accuracy first",
            elem_id="compare-table",
        )
    show.click(_compare, session, table, api_name="compare_runs")


@user_errors
def _compare(state: Session | None):
    folder = state.workdir / "runs" if state else None
    found = sorted(p for p in folder.iterdir() if p.is_dir()) if folder and folder.is_dir() else []
    table = runs.compare(found)
    if table.empty:
        raise DataError("No run has a saved model yet: train one (or the instant baseline) first.")
    table = table.round(
        {"test_accuracy": 3, "test_low": 3, "test_high": 3, "val_accuracy": 3, "val_macro_f1": 3}
    )
    return table.round({"seconds": 0}).rename(columns=SHOWN)


SHOWN = {
    "test_accuracy": "accuracy on test images",
    "test_low": "95% interval from",
    "test_high": "to",
    "test_images": "test images",
    "val_accuracy": "validation accuracy (chose the epoch)",
    "val_macro_f1": "score per class (macro F1)",
    "seconds": "seconds",
    "size_mb": "size (MB)",
}
