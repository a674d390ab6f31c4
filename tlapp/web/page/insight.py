"""Step 4 of the page (a tab under the loop): where the model is wrong, what it looked at, and fixes to the labels."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from ...data import Corrections, DataError
from ...views import GALLERY_LIMIT, cell_images, data_views, gallery_items, top_losses
from ..sessions import Session
from .common import image_gallery, user_errors


def insight_step(cell: gr.Textbox) -> dict:
    """Call inside its tab; `cell` is the hidden box a click on the confusion matrix fills
    (it lives beside the matrix, so that it exists whichever tab is open). `wire_insight`
    connects it once Train's handler exists."""
    gr.Markdown(
        "Click a number in the table of right and wrong answers (step 3) to see its images, or "
        "show the images the model is most wrong about. Click an image to see what the model "
        "looked at, and fix its label if it is wrong: fixes are kept aside (your files are "
        "never changed) and apply when you train again."
    )
    return {"cell": cell, **_layout()}


def wire_insight(session: gr.State, data: dict, train: dict, ui: dict) -> None:
    shown = [ui["title"], ui["gallery"], ui["shown"]]
    # Each shows its part once it has something in it (the API answers stay plain values).
    reveal = {"show_progress": "hidden", "api_visibility": "private"}
    ui["cell"].change(show_cell, [session, ui["cell"]], shown, api_name="show_cell").then(
        _reveal, ui["shown"], ui["gallery"], **reveal
    )
    ui["top_btn"].click(show_top, session, shown, api_name="top_losses").then(
        _reveal, ui["shown"], ui["gallery"], **reveal
    )
    picked = [ui["heat"], ui["about"], ui["fix_class"], ui["picked"]]
    ui["gallery"].select(pick, [session, ui["shown"]], picked).then(
        lambda path: gr.Row(visible=path is not None), ui["picked"], ui["picked_row"], **reveal
    )
    fix_outputs = [session, ui["fixes"], data["summary"], data["report"], data["skipped"]]
    fix_outputs.append(ui["retrain_btn"])
    ui["move_btn"].click(
        move, [session, ui["picked"], ui["fix_class"]], fix_outputs, api_name="move_image"
    )
    ui["drop_btn"].click(
        leave_out, [session, ui["picked"]], fix_outputs, api_name="leave_out_image"
    )
    ui["retrain_btn"].click(
        train["start"], train["inputs"], train["outputs"], api_visibility="private"
    )


def _layout() -> dict:
    top_btn = gr.Button(
        "Show the images it is most wrong about", elem_id="top-losses-btn", size="sm"
    )
    title = gr.Markdown(elem_id="gallery-title")
    gallery = image_gallery(
        "Validation images", "cell-gallery", 6, 330, allow_preview=False, visible=False
    )
    with gr.Row(visible=False) as picked_row:
        heat = gr.Image(
            label="What the model looked at (red: most)",
            elem_id="explain-image",
            height=360,
            interactive=False,
        )
        with gr.Column():
            about = gr.Markdown(elem_id="picked")
            fix_class = gr.Dropdown(
                label="This image's true class", choices=[], elem_id="fix-class"
            )
            with gr.Row():
                move_btn = gr.Button("Move it to this class", elem_id="fix-move")
                drop_btn = gr.Button("Leave it out", elem_id="fix-exclude", variant="stop")
            fixes = gr.Markdown(elem_id="corrections-count")
            retrain_btn = gr.Button(
                "Train again with these fixes",
                variant="primary",
                elem_id="retrain-btn",
                visible=False,
            )
    return {
        "picked_row": picked_row,
        "shown": gr.State([]),  # the paths in the gallery, in order
        "picked": gr.State(None),  # the path of the image clicked
        "top_btn": top_btn,
        "title": title,
        "gallery": gallery,
        "heat": heat,
        "about": about,
        "fix_class": fix_class,
        "move_btn": move_btn,
        "drop_btn": drop_btn,
        "fixes": fixes,
        "retrain_btn": retrain_btn,
    }


def _reveal(paths: list[str]):
    return gr.Gallery(visible=bool(paths))


def _show(rows: pd.DataFrame, heading: str):
    paths = rows["path"].tolist()[:GALLERY_LIMIT]
    return heading, gallery_items(rows), paths


def show_cell(state: Session | None, value: str):
    run = state.job.snapshot() if state and state.job else None
    if not run or run.predictions is None or not value or "," not in value:
        return gr.Markdown(), gr.Gallery(), []
    i, j = (int(v) for v in value.split(",")[:2])
    rows = cell_images(run.predictions, run.classes[i], run.classes[j])
    kind = "correct" if i == j else "confused"
    return _show(
        rows,
        f"**{len(rows)} image{'s' * (len(rows) != 1)}** of true class **{run.classes[i]}** predicted as "
        f"**{run.classes[j]}** ({kind}), latest epoch",
    )


def show_top(state: Session | None):
    run = state.job.snapshot() if state and state.job else None
    if not run or run.predictions is None:
        raise gr.Error("Train a model first: the top losses come from its validation images.")
    return _show(
        top_losses(run.predictions),
        "**Top losses:** the validation images the model "
        "is most wrong about, worst first. Look here for mislabelled images.",
    )


@user_errors
def pick(state: Session | None, paths: list[str], evt: gr.SelectData):
    run = state.job.snapshot() if state and state.job else None
    if not run or not run.has_model or evt.index is None or evt.index >= len(paths):
        return gr.Image(), gr.Markdown(), gr.Dropdown(), None
    path = paths[evt.index]
    row = run.predictions[run.predictions["path"] == path].iloc[0]
    image, method = state.predictor(run.run_dir).explain(path, row["predicted"])
    text = (
        f"**{Path(path).name}** — labelled **{row['true']}**, predicted **{row['predicted']}** "
        f"({row['confidence']:.0%}). Heat map: {method} for '{row['predicted']}'."
    )
    return image, text, gr.Dropdown(choices=state.dataset.classes, value=row["true"]), path


def _fixed(state: Session, corrections: Corrections):
    state.dataset = state.original.corrected(corrections)
    n = len(corrections)
    note = (
        f"**{n} correction{'s' if n != 1 else ''}** recorded "
        f"({len(corrections.relabel)} moved, {len(corrections.exclude)} left out); they "
        "apply to your next run: press **Train**."
    )
    return (state, note, *data_views(state.dataset), gr.Button(visible=n > 0))


def _check_current(state: Session, path: str | None) -> None:
    if not path:
        raise DataError("Click an image first.")
    if path not in set(state.original.samples["path"]):
        raise DataError(
            "This image belongs to data that is no longer loaded: train on the "
            "current data, then fix its images."
        )


@user_errors
def move(state: Session, path: str | None, label: str | None):
    _check_current(state, path)
    if not label:
        raise DataError("Choose the image's class first.")
    corrections = state.corrections()
    corrections.move(state.original.relative(path), label)
    return _fixed(state, corrections)


@user_errors
def leave_out(state: Session, path: str | None):
    _check_current(state, path)
    corrections = state.corrections()
    corrections.drop(state.original.relative(path))
    return _fixed(state, corrections)
