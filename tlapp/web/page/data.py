"""Step 1 of the page: the user's images in (a folder, a zip, classes made on the page, the
sample), the per-class table and the data check out."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from ...data import TEST_FRACTION
from ...views import GALLERY_LIMIT, data_views, health_summary, thumbnail
from ..sessions import Session, SessionRegistry
from ..settings import AppSettings
from ..uploads import (
    SAMPLE_DATA,
    Sample,
    dataset_from_folder_upload,
    dataset_from_upload,
    upload_bytes,
)
from .classes import class_maker, wire_classes
from .common import HINTS, image_gallery, user_errors


def data_step(registry: SessionRegistry, session: gr.State) -> dict:
    """Column 1: the ways in (a folder, classes made here, the sample), then what was loaded.
    `wire_data` connects them once the shares (in the advanced panel) exist."""
    gr.Markdown("## 1 · Your images", elem_classes="tl-step")
    with gr.Tabs(elem_id="data-tabs"):
        with gr.Tab("A folder", id="folder"):
            ui = _sources(registry.settings)
        with gr.Tab("Make classes here", id="classes", elem_id="classes-tab"):
            ui |= {f"classes_{k}": v for k, v in class_maker(registry, session).items()}
    ui["sample"] = gr.Button(
        "Or try the sample: handwritten digits (500 images, 10 classes)",
        visible=SAMPLE_DATA.is_dir(),
        elem_id="sample-btn",
        size="sm",
    )
    return ui | _tables()


def _sources(settings: AppSettings) -> dict:
    """The ways in: a folder dropped or picked, a zip, a path on this computer."""
    folder = gr.File(
        label="Drop your folder here, or click to choose it (one subfolder of images per class)",
        file_count="directory",
        elem_id="upload",
        height=130,
    )
    archive = gr.File(
        label="…or a .zip of that folder",
        elem_id="upload-zip",
        file_types=[".zip", ".csv"],
        height=120,
    )
    # Filled in by PAGE_JS with each file's path inside the folder: the labels.
    paths = gr.Textbox(visible="hidden", elem_id="upload-paths")
    with gr.Row(visible=settings.allow_local_paths):
        local = gr.Textbox(
            label="…or a folder on this computer",
            placeholder="/home/me/photos",
            elem_id="local-path",
            scale=3,
        )
        read_local = gr.Button("Read this folder", size="sm", scale=1)
    return {
        "folder": folder,
        "archive": archive,
        "paths": paths,
        "local": local,
        "read_local": read_local,
    }


def share_settings() -> dict:
    """How much of each class is held back; call inside the advanced panel."""
    gr.Markdown("**Images held back** (to choose the best epoch, and to measure the model)")
    val_fraction = gr.Slider(
        0.05, 0.5, value=0.2, step=0.05, label="Validation share", info=HINTS["val_fraction"]
    )
    test_fraction = gr.Slider(
        0, 0.3, value=TEST_FRACTION, step=0.05, label="Test share", info=HINTS["test_fraction"]
    )
    return {"val_fraction": val_fraction, "test_fraction": test_fraction}


def _tables() -> dict:
    """What was loaded: the summary, images per class, files left out, data health. The
    tables appear once there is something in them (`_reveal_tables`)."""
    summary = gr.Markdown(elem_id="data-summary")
    report = gr.Dataframe(
        label="Images per class: to train on (train), to choose the best epoch (val), to "
        "measure it at the end (test)",
        value=pd.DataFrame(columns=["class", "train", "val", "total"]),
        interactive=False,
        elem_id="class-table",
        max_height=260,
        visible=False,
    )
    skipped = gr.Dataframe(
        label="Files left out, and why",
        value=pd.DataFrame(columns=["path", "reason"]),
        interactive=False,
        elem_id="skipped-table",
        max_height=200,
        visible=False,
    )
    health = gr.Dataframe(
        label="Data check: click a finding to see its images",
        value=pd.DataFrame(columns=["finding", "detail", "images"]),
        interactive=False,
        elem_id="health-table",
        max_height=220,
        wrap=True,
        visible=False,
    )
    health_gallery = image_gallery(
        "Images of the selected finding",
        "health-gallery",
        6,
        220,
        allow_preview=True,
        visible=False,
    )
    return {
        "summary": summary,
        "report": report,
        "skipped": skipped,
        "health": health,
        "health_gallery": health_gallery,
    }


def _reveal_tables(state: Session | None):
    """Show the tables that have something in them now that data is loaded."""
    dataset = state.dataset if state else None
    findings = state.findings if state else None
    return (
        gr.Dataframe(visible=dataset is not None),
        gr.Dataframe(visible=dataset is not None and len(dataset.skipped) > 0),
        gr.Dataframe(visible=findings is not None and len(findings) > 0),
    )


def show_finding(state: Session | None, evt: gr.SelectData):
    if not state or state.findings is None or not len(state.findings):
        return gr.Gallery(visible=False)
    paths = state.findings.iloc[evt.index[0]]["paths"]
    items = [(thumbnail(p, 160), Path(p).name) for p in paths[:GALLERY_LIMIT]]
    return gr.Gallery(value=items, visible=True)


def _loader(registry: SessionRegistry, source, incoming=None):
    """A handler that loads a dataset from `source` into the visitor's session, once the
    machine has room for it and for what `incoming(*given)` says the upload will write."""

    @user_errors
    def load(state, *args):
        state = state or Session.new(registry.settings)
        *given, val_fraction, test_fraction = args
        registry.make_room(state, incoming(*given) if incoming else 0)
        loaded = source(state, *given, shares=(val_fraction, test_fraction))  # with findings?
        state.use(*(loaded if isinstance(loaded, tuple) else (loaded,)))
        return (state, *loaded_views(state))

    return load


def loaded_views(state: Session) -> tuple:
    """The summary (with the data check's verdict when it found nothing), the class table,
    the files left out and the data check's findings."""
    summary, report, skipped = data_views(state.dataset)
    if state.findings is None or not len(state.findings):
        summary += "\n\nData check: no duplicates, leaks between splits, tiny images or "
        summary += "lopsided classes found."
    return summary, report, skipped, health_summary(state.findings)


def wire_data(registry: SessionRegistry, session: gr.State, ui: dict, shares: dict) -> None:
    settings = registry.settings

    def from_folder(state, files, reported, shares):
        return dataset_from_folder_upload(settings, state, files, reported, shares)

    def from_archive(state, file, shares):
        return dataset_from_upload(settings, state, file, "", shares)

    def from_path(state, path, shares):
        return dataset_from_upload(settings, state, None, path, shares)

    sample = Sample()

    def from_sample(state, shares):
        return sample.load(shares)

    ui["health"].select(show_finding, session, ui["health_gallery"], api_visibility="private")
    outputs = data_outputs(session, ui)
    shares = [shares["val_fraction"], shares["test_fraction"]]
    loads = [
        ui["folder"].upload(
            _loader(registry, from_folder, lambda files, reported: upload_bytes(files)),
            [session, ui["folder"], ui["paths"], *shares],
            outputs,
            api_name="load_folder_upload",
        ),
        ui["archive"].upload(
            _loader(registry, from_archive, upload_bytes),
            [session, ui["archive"], *shares],
            outputs,
            api_name="load_upload",
        ),
    ]
    from_local = _loader(registry, from_path)
    local = [session, ui["local"], *shares]
    loads.append(ui["read_local"].click(from_local, local, outputs, api_name="load_folder"))
    loads.append(ui["local"].submit(from_local, local, outputs, api_visibility="private"))
    loads.append(
        ui["sample"].click(
            _loader(registry, from_sample), [session, *shares], outputs, api_name="use_sample"
        )
    )
    made_here = {k.removeprefix("classes_"): v for k, v in ui.items() if k.startswith("classes_")}
    loads.append(wire_classes(registry, session, made_here, shares, outputs))
    for load in loads:
        reveal_after(load, session, ui)


def data_outputs(session: gr.State, ui: dict) -> list:
    """What every way in updates, in the order `_loader` returns it."""
    return [session, ui["summary"], ui["report"], ui["skipped"], ui["health"]]


def reveal_after(event, session: gr.State, ui: dict) -> None:
    """Once `event` has loaded data, show the tables that have something in them."""
    event.then(
        _reveal_tables,
        session,
        [ui["report"], ui["skipped"], ui["health"]],
        show_progress="hidden",
        api_visibility="private",
    )
