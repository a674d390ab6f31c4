"""Step 5 of the page: classify one image (top 5 and a heat map) or many (a CSV)."""

from __future__ import annotations

import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from ...data import DataError, extract_zip, image_files
from ...predict import Predictor
from ..sessions import Session
from ..settings import AppSettings
from .common import user_errors


def use_step(settings: AppSettings, session: gr.State) -> None:
    gr.Markdown("## 5 · Try the model", elem_classes="tl-step")
    ui = _layout()

    @user_errors
    def predict_many(state: Session, files: list[str] | None):
        if not files:
            return None, gr.DownloadButton(visible=False)
        found, out = predictions_csv(state, files, settings)
        return found.round(4), gr.DownloadButton(
            value=str(out), visible=True, label=f"Download {len(found)} predictions (CSV)"
        )

    ui["image"].change(
        predict, [session, ui["image"]], [ui["result"], ui["heat"]], api_name="predict"
    )
    ui["batch"].upload(
        predict_many, [session, ui["batch"]], [ui["table"], ui["csv"]], api_name="predict_many"
    )


def _layout() -> dict:
    with gr.Row():
        image = gr.Image(
            type="filepath",
            label="An image to classify (upload, webcam or paste)",
            elem_id="predict-image",
            sources=["upload", "webcam", "clipboard"],
            height=280,
        )
        result = gr.Label(num_top_classes=5, label="Prediction (top 5)", elem_id="predict-result")
        heat = gr.Image(
            label="What it looked at (red: most)",
            elem_id="predict-heatmap",
            height=280,
            interactive=False,
        )
    with gr.Row():
        batch = gr.File(
            label="Classify many: images, or a .zip of them",
            file_count="multiple",
            elem_id="predict-batch",
            height=120,
        )
        with gr.Column():
            table = gr.Dataframe(
                value=pd.DataFrame(columns=["path", "prediction", "confidence"]),
                label="Predictions",
                interactive=False,
                elem_id="predict-table",
                max_height=300,
            )
            csv = gr.DownloadButton(
                "Download the predictions (CSV)", visible=False, elem_id="predict-csv"
            )
    return {
        "image": image,
        "result": result,
        "heat": heat,
        "batch": batch,
        "table": table,
        "csv": csv,
    }


def trained(state: Session | None) -> Predictor:
    run = state.job.snapshot() if state and state.job else None
    if not run or not run.has_model:
        raise DataError("Train a model first: predictions use the best epoch of your run.")
    return state.predictor(run.run_dir)


@user_errors
def predict(state: Session | None, path: str | None):
    if not path:
        return None, None
    predictor = trained(state)
    return dict(predictor.top_k(path, 5)), predictor.explain(path)[0]


def predictions_csv(
    state: Session, files: list[str], settings: AppSettings
) -> tuple[pd.DataFrame, Path]:
    """Predictions for uploaded images and zips of them, and the CSV they were written to."""
    predictor = trained(state)
    folder = state.workdir / "predict" / uuid.uuid4().hex[:8]
    paths = []
    for f in map(Path, files):
        if f.suffix.lower() == ".zip":
            extracted, _ = extract_zip(f, folder / f.stem, settings.limits)
            paths += image_files([extracted])
        else:
            paths.append(f)
    found = predictor.table(paths)
    found["path"] = [Path(p).name for p in found["path"]]
    out = state.workdir / "downloads" / "predictions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    found.to_csv(out, index=False)
    return found, out
