"""Step 7 of the page (a tab under the loop): beyond fine-tuning, each measured on the
visitor's own data.

Unlabelled images (self-training), images from another camera or lab (AdaBN) and a smaller
model (distillation), each an accordion whose handler calls `tlapp.methods`; the runs that
AdaBN and distillation write sit beside the visitor's other runs, so "Compare your runs" lists
them.
"""

from __future__ import annotations

import uuid

import gradio as gr

from ... import runs
from ...data import DataError, extract_zip, find_data_root
from ..downloads import download_link
from ..sessions import Session
from ..settings import AppSettings
from ..uploads import uploaded_images
from .common import user_errors
from .form import config_from_page
from .use import saved_run

IMAGES = ["image", ".zip"]


def beyond_step(settings: AppSettings, train_inputs: list) -> None:
    """`train_inputs` are the Train button's (session first): the same model and settings."""
    gr.Markdown(
        "Three standard answers to common problems, each tried on your own images and "
        "measured, so you can see whether it helps before you rely on it."
    )
    _unlabelled(settings, train_inputs)
    _domain_shift(settings, train_inputs[0])
    _smaller_model(settings, train_inputs[0])


def _progress(progress):
    return lambda what, done, total: progress((done, total), desc=what)


def _unlabelled(settings: AppSettings, train_inputs: list) -> None:
    with gr.Accordion("Unlabelled images: let the model label the ones it is sure of", open=False):
        gr.Markdown(
            "Add images of the same classes that nobody has labelled. The head is fitted on "
            "your labelled images, labels the new ones where it is at least as sure as the "
            "threshold, and is fitted again with them. Only your validation images are scored."
        )
        with gr.Row():
            files = gr.File(
                file_count="multiple",
                file_types=IMAGES,
                label="Unlabelled images, or a .zip of them",
                elem_id="unlabelled-files",
            )
            threshold = gr.Slider(
                0.5, 0.99, value=0.9, step=0.01, label="Take a label when at least this sure"
            )
        go = gr.Button("Try self-training", elem_id="self-train-btn")
        said = gr.Markdown(elem_id="self-train-result")
        table = gr.Dataframe(
            interactive=False, label="Images per class", elem_id="self-train-table"
        )

    @user_errors
    def run(state: Session | None, *values, progress=gr.Progress()):
        # Imported here: the page is served before torch loads (a background thread loads it).
        from ...methods.pseudo import self_train

        *page, files, threshold = values
        if state and state.busy:
            raise DataError("A run is training: try this when it has ended.")
        config = config_from_page(settings, state, *page)
        paths = _images(state, files, settings, "unlabelled")
        result = self_train(config, state.dataset, paths, threshold, progress=_progress(progress))
        return f"**{result.describe()}**", result.per_class

    go.click(run, [*train_inputs, files, threshold], [said, table], api_name="self_train")


def _domain_shift(settings: AppSettings, session: gr.State) -> None:
    with gr.Accordion("Images from another camera, microscope or lab (domain shift)", open=False):
        gr.Markdown(
            "When the images to classify look different from the training images (other "
            "lighting, stain, camera), the model can re-learn what a typical image looks like "
            "from the new images alone, no labels needed (AdaBN: it re-estimates the averages its "
            "layers normalise with, the BatchNorm statistics). Give some labelled examples of "
            "the new kind too (a .zip of class folders) to see accuracy before and after."
        )
        with gr.Row():
            target = gr.File(
                file_count="multiple",
                file_types=IMAGES,
                label="Images of the new kind, or a .zip of them",
                elem_id="adabn-target",
            )
            labelled = gr.File(
                file_types=[".zip"],
                label="Optional: labelled examples (.zip of class folders)",
                elem_id="adabn-labelled",
            )
        go = gr.Button("Adapt the model to these images", elem_id="adabn-btn")
        said = gr.Markdown(elem_id="adabn-result")
        download = gr.HTML(visible=False, elem_id="adabn-download")

    @user_errors
    def run(state: Session | None, target, labelled, progress=gr.Progress()):
        from ...methods.adabn import adapt_batchnorm

        source = saved_run(state).run_dir
        paths = _images(state, target, settings, "target")
        sample = _labelled_folder(state, labelled, settings)
        result = adapt_batchnorm(source, paths, sample, progress=_progress(progress))
        link = download_link(settings, result.run_dir, "Download the adapted model")
        return f"**{result.describe()}**", gr.HTML(link, visible=True)

    go.click(run, [session, target, labelled], [said, download], api_name="adabn")


def _smaller_model(settings: AppSettings, session: gr.State) -> None:
    with gr.Accordion("A smaller, faster model (distillation)", open=False):
        gr.Markdown(
            "Trains a smaller timm model to copy your trained model's predictions (softened "
            "with a temperature) on your training images, then measures both, and an int8 "
            "version of the small one, for size, speed on this CPU and accuracy. It trains a "
            "model, so it takes minutes."
        )
        with gr.Row():
            student = gr.Textbox(
                value="mobilenetv3_small_050",
                label="Smaller model (any timm name)",
                elem_id="student-model",
            )
            epochs = gr.Slider(1, 50, value=10, step=1, label="Epochs")
        go = gr.Button("Distil into the smaller model", elem_id="distill-btn")
        table = gr.Dataframe(
            interactive=False, label="Teacher and student", elem_id="distill-table"
        )
        download = gr.HTML(visible=False, elem_id="distill-download")

    @user_errors
    def run(state: Session | None, student, epochs, progress=gr.Progress()):
        from ...methods.distill import distill

        teacher = saved_run(state).run_dir
        out = state.workdir / "runs" / f"{runs.read_config(teacher)['arch']}-to-{student}"
        out = out.with_name(f"{out.name}-{uuid.uuid4().hex[:6]}")
        report = distill(teacher, student.strip(), out, int(epochs), progress=_progress(progress))
        link = download_link(settings, report.run, "Download the smaller model")
        return report.table, gr.HTML(link, visible=True)

    go.click(run, [session, student, epochs], [table, download], api_name="distill")


def _images(state: Session | None, files, settings: AppSettings, purpose: str) -> list:
    if not state or not files:
        raise DataError("Add some images first (or a .zip of them).")
    folder = state.workdir / purpose / uuid.uuid4().hex[:8]
    given = files if isinstance(files, list) else [files]
    return [str(p) for p in uploaded_images(given, folder, settings)]


def _labelled_folder(state: Session, upload, settings: AppSettings):
    if not upload:
        return None
    folder = state.workdir / "labelled" / uuid.uuid4().hex[:8]
    extracted, _ = extract_zip(upload, folder, settings.limits)
    return find_data_root(extracted)
