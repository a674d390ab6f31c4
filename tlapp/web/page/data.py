"""Step 1 of the page: the user's images in, the per-class table and data health out."""

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
from .common import HINTS, image_gallery, user_errors


def data_step(settings: AppSettings, session: gr.State, registry: SessionRegistry) -> dict:
    gr.Markdown("## 1 · Your images", elem_classes="tl-step")
    ui = _sources(settings)
    ui |= _tables()
    _wire(registry, session, ui)
    return ui


def _sources(settings: AppSettings) -> dict:
    """The ways in: a folder dropped or picked, a zip, the sample, a path on this computer."""
    with gr.Row():
        with gr.Column(scale=3):
            folder = gr.File(
                label="Drop your folder here, or click to choose it (one subfolder "
                "per class, or train/ and val/ folders)",
                file_count="directory",
                elem_id="upload",
                height=150,
            )
            archive = gr.File(
                label="…or upload a .zip of that folder",
                elem_id="upload-zip",
                file_types=[".zip", ".csv"],
                height=130,
            )
            # Filled in by PAGE_JS with each file's path inside the folder: the labels.
            paths = gr.Textbox(visible="hidden", elem_id="upload-paths")
        with gr.Column(scale=2):
            sample = gr.Button(
                "Use the sample: handwritten digits (500 images, 10 classes)",
                visible=SAMPLE_DATA.is_dir(),
                elem_id="sample-btn",
            )
            local = gr.Textbox(
                label="…or a folder on this computer",
                visible=settings.allow_local_paths,
                placeholder="/home/me/photos",
                elem_id="local-path",
            )
            read_local = gr.Button(
                "Read this folder", size="sm", visible=settings.allow_local_paths
            )
    with gr.Row():
        val_fraction = gr.Slider(
            0.05, 0.5, value=0.2, step=0.05, label="Validation share", info=HINTS["val_fraction"]
        )
        test_fraction = gr.Slider(
            0, 0.3, value=TEST_FRACTION, step=0.05, label="Test share", info=HINTS["test_fraction"]
        )
    return {
        "folder": folder,
        "archive": archive,
        "paths": paths,
        "sample": sample,
        "local": local,
        "read_local": read_local,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
    }


def _tables() -> dict:
    """What was loaded: the summary, images per class, files left out, data health."""
    summary = gr.Markdown(elem_id="data-summary")
    with gr.Row():
        report = gr.Dataframe(
            label="Images per class and split",
            value=pd.DataFrame(columns=["class", "train", "val", "total"]),
            interactive=False,
            elem_id="class-table",
            max_height=320,
        )
        skipped = gr.Dataframe(
            label="Files left out, and why",
            value=pd.DataFrame(columns=["path", "reason"]),
            interactive=False,
            elem_id="skipped-table",
            max_height=320,
        )
    health = gr.Dataframe(
        label="Data health: click a finding to see its images",
        value=pd.DataFrame(columns=["finding", "detail", "images"]),
        interactive=False,
        elem_id="health-table",
        max_height=260,
        wrap=True,
    )
    health_gallery = image_gallery(
        "Images of the selected finding",
        "health-gallery",
        8,
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
        return (state, *data_views(state.dataset), health_summary(state.findings))

    return load


def _wire(registry: SessionRegistry, session: gr.State, ui: dict) -> None:
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
    outputs = [session, ui["summary"], ui["report"], ui["skipped"], ui["health"]]
    shares = [ui["val_fraction"], ui["test_fraction"]]
    ui["folder"].upload(
        _loader(registry, from_folder, lambda files, reported: upload_bytes(files)),
        [session, ui["folder"], ui["paths"], *shares],
        outputs,
        api_name="load_folder_upload",
    )
    ui["archive"].upload(
        _loader(registry, from_archive, upload_bytes),
        [session, ui["archive"], *shares],
        outputs,
        api_name="load_upload",
    )
    from_local = _loader(registry, from_path)
    ui["read_local"].click(
        from_local, [session, ui["local"], *shares], outputs, api_name="load_folder"
    )
    ui["local"].submit(
        from_local, [session, ui["local"], *shares], outputs, api_visibility="private"
    )
    ui["sample"].click(
        _loader(registry, from_sample), [session, *shares], outputs, api_name="use_sample"
    )
