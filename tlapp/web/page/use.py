"""Steps 5 and 6 of the page (tabs under the loop): classify one image (top 5 and a heat map) or many (a CSV), and take the
model away: an ONNX export, the code that loads it, and publishing to the Hugging Face Hub."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import pandas as pd

from ...data import DataError
from ...train.state import RunState
from ..sessions import Session
from ..settings import AppSettings
from ..uploads import uploaded_images
from .common import user_errors

if TYPE_CHECKING:
    from ...predict import Predictor


def use_step(settings: AppSettings, session: gr.State) -> None:
    """Call inside its tab."""
    ui = _layout()

    @user_errors
    def predict_many(state: Session, files: list[str] | None):
        if not files:
            return None, gr.DownloadButton(visible=False)
        found, out = predictions_csv(state, files, settings)
        return found.round(4), gr.DownloadButton(
            value=str(out), visible=True, label=f"Download {len(found)} predictions (CSV)"
        )

    # The answers appear with their first content (the API's answers stay plain values).
    hidden = {"show_progress": "hidden", "api_visibility": "private"}
    ui["image"].change(
        predict, [session, ui["image"]], [ui["result"], ui["heat"]], api_name="predict"
    ).then(_reveal_answer, ui["image"], [ui["result"], ui["heat"]], **hidden)
    ui["batch"].upload(
        predict_many, [session, ui["batch"]], [ui["table"], ui["csv"]], api_name="predict_many"
    ).then(lambda files: gr.Dataframe(visible=bool(files)), ui["batch"], ui["table"], **hidden)


def _reveal_answer(path: str | None):
    return gr.Label(visible=bool(path)), gr.Image(visible=bool(path))


def take_away(settings: AppSettings, session: gr.State, tab: gr.Tab) -> None:
    """Inside `tab`: export to ONNX, the usage code, publish to the hub."""
    ui = {"opened": tab, **_onnx_export(), **_usage_code(), **_hub_publishing(settings)}

    @user_errors
    def export(state: Session | None):
        from ...export import export_onnx

        run = saved_run(state)
        report = export_onnx(run.run_dir)
        button = gr.DownloadButton(
            value=str(report.path),
            visible=True,
            label=f"Download {report.path.name} ({report.size_bytes / 1e6:.1f} MB)",
        )
        return button, report.describe(), code_for(run.run_dir)

    @user_errors
    def snippet(state: Session | None):
        return code_for(saved_run(state).run_dir)

    def snippet_if_any(state: Session | None):  # opening the tab: no error, a comment
        try:
            return code_for(saved_run(state).run_dir)
        except (DataError, ValueError) as err:
            return f"# {err}"

    @user_errors
    def publish(state: Session | None, repo_id: str, token: str, private: bool):
        from ...export import push_to_hub

        run = saved_run(state)
        url = push_to_hub(
            run.run_dir,
            repo_id,
            token=token or None,
            private=bool(private),
            stored_token=settings.allow_local_paths,  # a public page never uses the server's
        )
        kind = "private" if private else "public"
        return (
            f"Published to [{url}]({url}) ({kind} if it is new; a repository that was there "
            "already keeps its own setting)."
        )

    ui["export"].click(
        export,
        session,
        [ui["onnx_file"], ui["export_report"], ui["snippet"]],
        api_name="export_onnx",
    )
    ui["show_snippet"].click(snippet, session, ui["snippet"], api_name="usage_snippet")
    ui["opened"].select(snippet_if_any, session, ui["snippet"], api_visibility="private")
    ui["publish"].click(
        publish,
        [session, ui["repo"], ui["token"], ui["private"]],
        ui["published"],
        api_name="push_to_hub",
    )


def _onnx_export() -> dict:
    gr.Markdown(
        "**ONNX**: a single file for ONNX Runtime (phones, servers, other languages), "
        "checked against the trained model on your validation images before it is kept."
    )
    with gr.Row():
        export = gr.Button("Export to ONNX", elem_id="export-onnx")
        onnx_file = gr.DownloadButton(
            "Download model.onnx", visible=False, elem_id="export-onnx-download"
        )
    export_report = gr.Markdown(elem_id="export-onnx-report")
    return {"export": export, "onnx_file": onnx_file, "export_report": export_report}


def _usage_code() -> dict:
    with gr.Row():
        show_snippet = gr.Button(
            "Show the code for this run", size="sm", elem_id="usage-snippet-button"
        )
    snippet = gr.Code(
        language="python",
        label="Use it in Python (replace photo.jpg with your image)",
        interactive=False,
        elem_id="usage-snippet",
    )
    return {"show_snippet": show_snippet, "snippet": snippet}


def _hub_publishing(settings: AppSettings) -> dict:
    """The repository, token and privacy to publish with. Only an app run for one local user
    (allow_local_paths) mentions HF_TOKEN and the stored login: that environment is theirs."""
    token_info = (
        "Needs write access (huggingface.co/settings/tokens). Used for this upload only, never "
        "saved or logged."
    )
    if settings.allow_local_paths:
        token_info += " Empty: HF_TOKEN in the environment, or the login of `hf auth login`."
    gr.Markdown(
        "**Publish to the Hugging Face Hub**: the model, timm's config, the training record "
        "and the scores, with a model card. Your images and their file names stay here."
    )
    with gr.Row():
        repo = gr.Textbox(
            label="Repository (name or user/name)",
            placeholder="my-name/my-classifier",
            elem_id="hub-repo",
        )
        token = gr.Textbox(
            label="Hugging Face token",
            type="password",
            info=token_info,
            elem_id="hub-token",
        )
    with gr.Row():
        private = gr.Checkbox(
            value=True,
            label="Private repository (only you can see it)",
            elem_id="hub-private",
        )
        publish = gr.Button("Publish to the Hub", elem_id="hub-push")
    published = gr.Markdown(elem_id="hub-result")
    return {
        "repo": repo,
        "token": token,
        "private": private,
        "publish": publish,
        "published": published,
    }


def _layout() -> dict:
    with gr.Row():
        image = gr.Image(
            type="filepath",
            # The file as uploaded, opened by the predictor's own safe reader: with a mode to
            # convert to, Gradio writes a converted copy in place under a name shared by every
            # upload of the same picture, and a visitor could read another's half-written copy.
            image_mode=None,
            label="An image to classify (upload, webcam or paste)",
            elem_id="predict-image",
            sources=["upload", "webcam", "clipboard"],
            height=280,
        )
        result = gr.Label(
            num_top_classes=5, label="What it says", elem_id="predict-result", visible=False
        )
        heat = gr.Image(
            label="What it looked at (red: most)",
            elem_id="predict-heatmap",
            height=280,
            interactive=False,
            visible=False,
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
                visible=False,
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


def saved_run(state: Session | None) -> RunState:
    """The session's run, once it has ended with a saved model; else a sentence saying why not."""
    if state and state.busy:
        raise DataError("A run is training: take the model away when it has ended.")
    run = state.job.snapshot() if state and state.job else None
    if not run or not run.has_model:
        raise DataError("Train a model first: there is no saved model to take away yet.")
    return run


def code_for(run_dir: str) -> str:
    """The timm code that loads the run, and the ONNX Runtime code once it has been exported."""
    from ...export import onnx_snippet, usage_snippet

    code = usage_snippet(run_dir)
    onnx = onnx_snippet(run_dir)
    if onnx:
        code += "\n\n# Or with ONNX Runtime, from the exported model.onnx:\n" + onnx
    return code


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
    paths = uploaded_images(files, state.workdir / "predict" / uuid.uuid4().hex[:8], settings)
    found = predictor.table(paths)
    found["path"] = [Path(p).name for p in found["path"]]
    out = state.workdir / "downloads" / "predictions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    found.to_csv(out, index=False)
    return found, out
