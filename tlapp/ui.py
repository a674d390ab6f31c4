"""The browser page: a thin Gradio layer over the engine.

    demo = build_ui(AppSettings.from_env(server_name="127.0.0.1"))
    demo.launch(**launch_kwargs(settings))

It builds a TrainConfig from the widgets, starts a Job, and a gr.Timer polls the Job's snapshot
once a second to redraw the curves, the confusion matrix and the per-class table. Each visitor
gets a `Session` (in gr.State) with a folder of their own; nothing per-visitor lives in globals.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from . import models, runs
from .data import (
    Corrections,
    DataError,
    Dataset,
    Limits,
    assemble_upload,
    extract_zip,
    image_files,
    load_dataset,
)
from .health import check_health
from .engine import Job, make_config, resume_config
from .predict import Predictor
from .slots import TrainingSlots
from .views import (
    ACCURACY_COLORS,
    GALLERY_LIMIT,
    EPOCH_COLORS,
    STEP_COLORS,
    accuracy_frame,
    confusion_html,
    data_views,
    health_summary,
    epoch_loss_frame,
    per_class_view,
    resumable,
    status_markdown,
    step_loss_frame,
    thumbnail,
    reliability_html,
    calibration_text,
    cell_images,
    top_losses,
    gallery_items,
)
from .models import ModelError

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "assets" / "digits"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HINTS = {
    "freeze": "Frozen stages keep their pretrained weights and train faster; 0 trains every layer, "
    "the maximum trains only the new head. With few images, freeze more.",
    "weights": "auto: start from weights pretrained on ImageNet when they can be downloaded or are "
    "cached; offline, the model starts from random weights (you will be warned) and "
    "needs many more images. none: always random. A file: start from your own weights.",
    "epochs": "One epoch shows every training image once. 5–10 is usually enough for a pretrained model.",
    "img_size": "Images are resized to this square size. Smaller is faster; 224 suits most models.",
    "batch_size": "Images per training step. Lower it if you run out of memory.",
    "lr": "How big each learning step is. The default suits fine-tuning; lower it if training diverges.",
    "val_fraction": "Share of each class held back to measure accuracy (ignored when your data has a val/ folder).",
    "augment": "Random crops, flips and slight colour changes, so the model sees more variety.",
    "balance": "Make rare classes count as much as common ones in training (when one class has "
    "far fewer images).",
}


# ----------------------------------------------------------------------------- settings & session
@dataclass(frozen=True)
class AppSettings:
    home: Path  # per-session folders live under home/sessions
    allow_local_paths: bool  # read folders on this computer (never on a public server)
    limits: Limits = Limits()  # per upload: total bytes, file count, pixels per image
    max_jobs: int = 1  # jobs training at once; the others wait in a queue
    retention_hours: float = 24.0  # session folders (uploads, runs) older than this are removed

    @staticmethod
    def from_env(server_name: str = "127.0.0.1", share: bool = False) -> "AppSettings":
        """Local paths only when the page is private: loopback, not shared, not on Spaces.
        TLAPP_LOCAL_FOLDERS=1/0 overrides; TLAPP_MAX_UPLOAD_MB, TLAPP_MAX_FILES,
        TLAPP_MAX_PIXELS, TLAPP_MAX_JOBS and TLAPP_RETENTION_HOURS set the limits."""
        env = os.environ.get
        private = server_name in LOOPBACK and not share and not env("SPACE_ID")
        override = env("TLAPP_LOCAL_FOLDERS", "").strip().lower()
        allow = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            override, private
        )
        default = Limits()
        limits = Limits(
            max_bytes=int(float(env("TLAPP_MAX_UPLOAD_MB", default.max_bytes / 2**20)) * 2**20),
            max_files=int(env("TLAPP_MAX_FILES", default.max_files)),
            max_pixels=int(env("TLAPP_MAX_PIXELS", default.max_pixels)),
        )
        return AppSettings(
            Path(env("TLAPP_HOME", "tlapp_data")).resolve(),
            allow,
            limits,
            int(env("TLAPP_MAX_JOBS", 1)),
            float(env("TLAPP_RETENTION_HOURS", 24)),
        )


@dataclass
class Session:
    """One visitor's data, job and model. Held in gr.State, so never shared between visitors."""

    workdir: Path
    dataset: Dataset | None = None  # as loaded, with the corrections applied
    original: Dataset | None = None  # as loaded
    findings: pd.DataFrame | None = None  # data health
    job: Job | None = None
    predictors: dict = field(default_factory=dict)

    def use(self, dataset: Dataset) -> None:
        self.original, self.findings = dataset, check_health(dataset)
        self.dataset = dataset.corrected(self.corrections())

    def data_folder(self, name: str) -> Path:
        """A new folder for one upload, so a later upload never replaces files a job reads."""
        return self.workdir / "data" / f"{name}-{uuid.uuid4().hex[:8]}"

    def corrections(self) -> Corrections:
        """The corrections of the current data, kept in this session's folder."""
        key = hashlib.blake2b(self.original.root.encode(), digest_size=8).hexdigest()
        return Corrections.load(self.workdir / "corrections" / f"{key}.json")

    @staticmethod
    def new(settings: AppSettings) -> "Session":
        workdir = settings.home / "sessions" / uuid.uuid4().hex
        workdir.mkdir(parents=True, exist_ok=True)
        return Session(workdir)

    def predictor(self, run_dir: str) -> Predictor:
        """The run's best model, reloaded whenever a better epoch has been saved."""
        weights = Path(run_dir) / runs.WEIGHTS
        key = (run_dir, weights.stat().st_mtime_ns)
        if key not in self.predictors:
            self.predictors = {key: Predictor(run_dir)}
        return self.predictors[key]

    @property
    def busy(self) -> bool:
        return bool(self.job and self.job.running)


class SessionRegistry:
    """The sessions of one app, by Gradio session hash, for what happens when a page closes.

    Policy: closing the page lets a training job finish its current epoch, save and end; the
    session's folder is removed when Gradio drops its state (an hour after the page closed),
    and any session folder untouched for `retention_hours` is swept away."""

    def __init__(self, settings: AppSettings):
        self.settings, self.by_hash, self.lock = settings, {}, threading.Lock()

    def open(self, session_hash: str | None) -> Session:
        self.sweep()
        session = Session.new(self.settings)
        if session_hash:
            with self.lock:
                self.by_hash[session_hash] = session
        return session

    def close(self, session_hash: str | None) -> None:
        with self.lock:
            session = self.by_hash.pop(session_hash, None)
        if session and session.job:
            session.job.finish_epoch_and_stop()

    def discard(self, session: Session | None) -> None:
        """Gradio dropped this session's state: remove its files unless a job still runs."""
        if session and not session.busy:
            shutil.rmtree(session.workdir, ignore_errors=True)

    def sweep(self) -> None:
        root = self.settings.home / "sessions"
        if not root.is_dir():
            return
        with self.lock:
            busy = {s.workdir for s in self.by_hash.values() if s.busy}
        cutoff = time.time() - self.settings.retention_hours * 3600
        for folder in root.iterdir():
            if folder not in busy and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def user_errors(fn):
    """Show expected problems as a readable message on the page, never as a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ModelError, runs.RunError, ValueError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as err:
            raise gr.Error(
                f"Something went wrong ({type(err).__name__}: {err}). "
                "Try again; if it keeps happening, restart the app."
            ) from None

    return wrapper


# ----------------------------------------------------------------------------- data step
def dataset_from_upload(
    settings: AppSettings,
    session: Session,
    upload: str | None,
    local_path: str,
    val_fraction: float,
) -> Dataset:
    if local_path and local_path.strip():
        if not settings.allow_local_paths:
            raise DataError(
                "Reading folders on the server is turned off here: upload a .zip instead."
            )
        return load_dataset(
            Path(local_path.strip()).expanduser(), val_fraction, limits=settings.limits
        )
    if not upload:
        raise DataError(
            "Choose data first: upload a .zip of class folders, or use the sample digits."
        )
    upload = Path(upload)
    if upload.suffix.lower() == ".zip":
        target = session.data_folder(upload.stem)
        return load_dataset(upload, val_fraction, extract_to=target, limits=settings.limits)
    if upload.suffix.lower() == ".csv" and settings.allow_local_paths:
        return load_dataset(upload, val_fraction, limits=settings.limits)
    raise DataError(
        f"'{upload.name}' is not a .zip of class folders: zip the folder that holds "
        "one subfolder per class and upload that."
    )


def dataset_from_folder_upload(
    settings: AppSettings,
    session: Session,
    files: list[str] | None,
    reported: str,
    val_fraction: float,
) -> Dataset:
    """A folder chosen or dropped in the browser: rebuild it from the files and their paths."""
    if not files:
        raise DataError(
            "The folder arrived empty: choose a folder that holds one subfolder per class."
        )
    if len(files) == 1 and Path(files[0]).suffix.lower() == ".zip":
        target = session.data_folder(Path(files[0]).stem)
        return load_dataset(files[0], val_fraction, extract_to=target, limits=settings.limits)
    try:
        paths = json.loads(reported or "[]")
    except json.JSONDecodeError:
        paths = []
    target = session.data_folder("folder")
    folder = assemble_upload(files, paths, target, settings.limits)
    return load_dataset(folder, val_fraction, limits=settings.limits)


# ----------------------------------------------------------------------------- handlers
def model_name(choice: str, custom: str) -> str:
    return models.check_name(custom.strip() if custom and custom.strip() else choice)


def freeze_view(choice: str, custom: str, depth: float, session: Session | None):
    """Slider range and the sentence under it, for the chosen model (built on the meta device)."""
    classes = len(session.dataset.classes) if session and session.dataset else 2
    try:
        plan = models.preview_freeze(model_name(choice, custom), int(depth or 0), classes)
    except ModelError as err:
        return gr.Slider(), f"**Problem:** {err}"
    except ValueError:
        plan = models.preview_freeze(model_name(choice, custom), "all", classes)
    slider = gr.Slider(
        maximum=len(plan.stages),
        value=plan.depth,
        label=f"Freeze depth (0–{len(plan.stages)} stages)",
    )
    return slider, plan.describe()


def weights_choice(mode: str, upload: str | None, path: str, settings: AppSettings) -> str:
    if mode != "from a file":
        return mode
    if upload:
        return upload
    if path and path.strip():
        if not settings.allow_local_paths:
            raise DataError(
                "Reading files on the server is turned off here: upload the weights file."
            )
        return str(Path(path.strip()).expanduser())
    raise DataError(
        "Choose a weights file (.safetensors or .pth) or a previous run folder, "
        "or pick weights 'auto'."
    )


def poll_outputs(session: Session | None):
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
            gr.DownloadButton(),
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
    download = gr.DownloadButton(visible=False)
    if state.finished and state.best_epoch:
        try:
            zip_path = runs.zip_run(state.run_dir, session.workdir / "downloads")
            download = gr.DownloadButton(
                value=str(zip_path),
                visible=True,
                label=f"Download the model and results ({zip_path.name})",
            )
        except OSError as err:  # a full disk must not stop the page from showing the end
            state.notes.append(f"The download could not be prepared ({err.strerror or err}).")
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
        gr.Button(visible=state.finished and state.status != "done" and resumable(state.run_dir)),
        reliability_html(state.reliability),
        calibration_text(state),
    )


# ----------------------------------------------------------------------------- layout
CSS = """
.tl-step h2 { margin-bottom: 0.2em; }
.tl-muted { color: var(--body-text-color-subdued); }
.tl-cm { overflow-x: auto; }
.tl-cm table { border-collapse: collapse; font-size: 0.9em; margin: 0 auto; }
.tl-cm caption { caption-side: bottom; color: var(--body-text-color-subdued); padding-top: 6px; }
.tl-cm th, .tl-cm td { border: 1px solid var(--border-color-primary); padding: 4px 8px;
                       text-align: center; min-width: 2.2em; }
.tl-cm th.tl-true { text-align: right; }
.tl-cm td[data-cell] { cursor: pointer; }
.tl-cal table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.tl-cal th, .tl-cal td { padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); }
.tl-cal td:nth-child(2) { width: 45%; }
.tl-bar { height: 7px; border-radius: 3px; margin: 2px 0; }
.tl-said { background: #9ca3af; }
.tl-right { background: #2563eb; }
.tl-cm td[data-cell]:hover { outline: 2px solid var(--color-accent); }
#status { min-height: 2.5em; }
"""


def build_ui(settings: AppSettings) -> gr.Blocks:
    registry, slots = SessionRegistry(settings), TrainingSlots(settings.max_jobs)
    # Gradio's own copies of uploads are deleted after two hours, checked every half hour.
    with gr.Blocks(title="tlapp · train an image classifier", delete_cache=(1800, 7200)) as demo:
        session = gr.State(None, delete_callback=registry.discard)
        gr.Markdown(
            "# tlapp — train an image classifier\n"
            "Give it a folder of images sorted into one subfolder per class, pick a model, "
            "press **Train**, and watch it learn. Your images stay on this machine."
        )
        data = _data_step(settings, session)
        model = _model_step(settings, session)
        train = _train_step(settings, session, data, model, slots)
        _insight_step(session, data, train)
        _use_step(settings, session, train)

        def open_session(request: gr.Request):
            return registry.open(request.session_hash if request else None)

        def close_session(request: gr.Request):
            registry.close(request.session_hash if request else None)

        demo.load(open_session, None, session, api_visibility="private")
        demo.unload(close_session)
    return demo


def image_gallery(label: str, elem_id: str, columns: int, height: int, **kwargs) -> gr.Gallery:
    """A grid of thumbnails that keeps its column count however few images it shows."""
    return gr.Gallery(
        label=label,
        elem_id=elem_id,
        columns=columns,
        height=height,
        fit_columns=False,
        object_fit="contain",
        **kwargs,
    )


def _data_step(settings: AppSettings, session: gr.State) -> dict:
    gr.Markdown("## 1 · Your images", elem_classes="tl-step")
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
    val_fraction = gr.Slider(
        0.05, 0.5, value=0.2, step=0.05, label="Validation share", info=HINTS["val_fraction"]
    )
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

    def show_finding(state, evt: gr.SelectData):
        if not state or state.findings is None or not len(state.findings):
            return gr.Gallery(visible=False)
        paths = state.findings.iloc[evt.index[0]]["paths"]
        items = [(thumbnail(p, 160), Path(p).name) for p in paths[:GALLERY_LIMIT]]
        return gr.Gallery(value=items, visible=True)

    health.select(show_finding, session, health_gallery, api_visibility="private")

    def loader(source):
        @user_errors
        def load(state, *args):
            state = state or Session.new(settings)
            state.use(source(state, *args[:-1], val_fraction=args[-1]))
            return (state, *data_views(state.dataset), health_summary(state.findings))

        return load

    def from_folder(state, files, reported, val_fraction):
        return dataset_from_folder_upload(settings, state, files, reported, val_fraction)

    def from_archive(state, file, val_fraction):
        return dataset_from_upload(settings, state, file, "", val_fraction)

    def from_path(state, path, val_fraction):
        return dataset_from_upload(settings, state, None, path, val_fraction)

    def from_sample(state, val_fraction):
        return load_dataset(SAMPLE_DATA, val_fraction)

    outputs = [session, summary, report, skipped, health]
    folder.upload(
        loader(from_folder),
        [session, folder, paths, val_fraction],
        outputs,
        api_name="load_folder_upload",
    )
    archive.upload(
        loader(from_archive), [session, archive, val_fraction], outputs, api_name="load_upload"
    )
    read_local.click(
        loader(from_path), [session, local, val_fraction], outputs, api_name="load_folder"
    )
    local.submit(
        loader(from_path), [session, local, val_fraction], outputs, api_visibility="private"
    )
    sample.click(loader(from_sample), [session, val_fraction], outputs, api_name="use_sample")
    return {
        "val_fraction": val_fraction,
        "summary": summary,
        "sample": sample,
        "report": report,
        "skipped": skipped,
    }


def _model_step(settings: AppSettings, session: gr.State) -> dict:
    gr.Markdown("## 2 · Model", elem_classes="tl-step")
    with gr.Row():
        choice = gr.Dropdown(
            models.catalog_choices(),
            value=models.DEFAULT_MODEL,
            label="Backbone (pretrained network to start from)",
            elem_id="model",
            scale=3,
        )
        custom = gr.Textbox(
            label="…or any timm model name",
            placeholder="e.g. resnet34",
            elem_id="custom-model",
            scale=2,
        )
    with gr.Row():
        weights = gr.Radio(
            ["auto", "pretrained", "none", "from a file"],
            value="auto",
            label="Starting weights",
            info=HINTS["weights"],
            elem_id="weights",
        )
        with gr.Column(visible=False) as file_box:
            weights_file = gr.File(
                label="Weights (.safetensors / .pth)",
                file_types=[".safetensors", ".pth", ".pt"],
                height=100,
            )
            weights_path = gr.Textbox(
                label="…or a weights file or earlier run folder on this computer",
                visible=settings.allow_local_paths,
            )
    plan = models.preview_freeze(models.DEFAULT_MODEL, 0, 2)
    freeze = gr.Slider(
        0,
        len(plan.stages),
        value=0,
        step=1,
        elem_id="freeze",
        label=f"Freeze depth (0–{len(plan.stages)} stages)",
        info=HINTS["freeze"],
    )
    freeze_note = gr.Markdown(plan.describe(), elem_id="freeze-note")

    weights.change(lambda m: gr.Column(visible=m == "from a file"), weights, file_box)
    for trigger in (choice.change, custom.submit, custom.blur):
        trigger(
            freeze_view,
            [choice, custom, freeze, session],
            [freeze, freeze_note],
            show_progress="hidden",
        )
    freeze.input(
        lambda *a: freeze_view(*a)[1],
        [choice, custom, freeze, session],
        freeze_note,
        show_progress="hidden",
    )
    return {
        "choice": choice,
        "custom": custom,
        "weights": weights,
        "weights_file": weights_file,
        "weights_path": weights_path,
        "freeze": freeze,
    }


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
    download = gr.DownloadButton(
        "Download the model and results", visible=False, elem_id="download-run"
    )
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


def _train_step(
    settings: AppSettings, session: gr.State, data: dict, model: dict, slots: TrainingSlots
) -> dict:
    gr.Markdown("## 3 · Train", elem_classes="tl-step")
    knobs = _training_settings()
    with gr.Row():
        train_btn = gr.Button("Train", variant="primary", elem_id="train-btn", scale=3)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn", interactive=False, scale=1)
        resume_btn = gr.Button("Resume the run", elem_id="resume-btn", visible=False, scale=1)
    status = gr.Markdown("Load data, pick a model, then press **Train**.", elem_id="status")
    view = _results_panel()
    timer = gr.Timer(1.0, active=False)

    @user_errors
    def start(
        state,
        choice,
        custom,
        weights,
        weights_file,
        weights_path,
        freeze,
        n_epochs,
        size,
        batch,
        rate,
        aug,
        balance,
    ):
        if not state or not state.dataset:
            raise DataError("Load your images first (step 1), or use the sample digits.")
        if state.job and state.job.running:
            raise DataError("A run is already training: stop it first.")
        state.dataset.check()
        corrections = state.corrections()
        config = make_config(
            data=state.dataset.root,
            model=model_name(choice, custom),
            weights=weights_choice(weights, weights_file, weights_path, settings),
            freeze=int(freeze),
            epochs=n_epochs,
            img_size=size,
            batch_size=batch,
            lr=rate,
            augment=aug,
            balance_classes=balance,
            val_fraction=state.dataset.val_fraction,  # the split the data was loaded with
            runs_root=str(state.workdir / "runs"),
            cache_dir=str(settings.home / "cache"),
            corrections=str(corrections.file) if len(corrections) else "",
        )
        state.job = Job(config, state.dataset, slots=slots).start()
        return (
            state,
            "**Starting** · loading the model…",
            gr.Timer(active=True),
            gr.Button(interactive=False),
            gr.Button(interactive=True),
        )

    @user_errors
    def resume(state):
        if not state or not state.job or state.job.running:
            raise DataError("There is no stopped run to resume.")
        run_dir = state.job.snapshot().run_dir
        # The run's own data and corrections, as its config.json records them, not what is
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

    def stop(state):
        if state and state.job and state.job.running:
            state.job.stop()
            return "**Stopping** after the current batch…"
        return gr.Markdown()

    train_inputs = [
        session,
        model["choice"],
        model["custom"],
        model["weights"],
        model["weights_file"],
        model["weights_path"],
        model["freeze"],
        knobs["epochs"],
        knobs["img_size"],
        knobs["batch_size"],
        knobs["lr"],
        knobs["augment"],
        knobs["balance"],
    ]
    train_btn.click(
        start, train_inputs, [session, status, timer, train_btn, stop_btn], api_name="train"
    )
    stop_btn.click(stop, session, status, concurrency_limit=None, api_name="stop")
    resume_btn.click(
        resume,
        session,
        [session, status, timer, train_btn, stop_btn, resume_btn],
        api_name="resume",
    )
    timer.tick(
        poll_outputs,
        session,
        [
            status,
            view["loss_plot"],
            view["epoch_plot"],
            view["acc_plot"],
            view["matrix"],
            view["summary"],
            view["per_class"],
            view["download"],
            timer,
            train_btn,
            stop_btn,
            resume_btn,
            view["reliability"],
            view["calibration"],
        ],
        concurrency_limit=None,
        show_progress="hidden",
        api_name="poll",
    )
    data["sample"].click(lambda: gr.Slider(value=64), None, knobs["img_size"])
    return {
        "status": status,
        "matrix": view["matrix"],
        "start": start,
        "inputs": train_inputs,
        "outputs": [session, status, timer, train_btn, stop_btn],
    }


def _insight_step(session: gr.State, data: dict, train: dict) -> None:
    gr.Markdown("## 4 · Where is it wrong?", elem_classes="tl-step")
    gr.Markdown(
        "Click a cell of the confusion matrix to see its images, or show the images the model "
        "is most wrong about. Click an image to see what the model looked at, and fix its label "
        "if it is wrong: fixes are kept aside (your files are never changed) and apply when you "
        "train again."
    )
    cell = gr.Textbox(visible="hidden", elem_id="cm-cell")  # set by PAGE_JS on a click
    shown, picked = gr.State([]), gr.State(None)
    top_btn = gr.Button("Show the top losses", elem_id="top-losses-btn", size="sm")
    title = gr.Markdown(elem_id="gallery-title")
    gallery = image_gallery("Validation images", "cell-gallery", 6, 330, allow_preview=False)
    with gr.Row():
        heat = gr.Image(
            label="What the model looked at (red: most)",
            elem_id="explain-image",
            height=360,
            interactive=False,
        )
        with gr.Column():
            about = gr.Markdown("Click an image above.", elem_id="picked")
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

    def show(rows: pd.DataFrame, heading: str):
        paths = rows["path"].tolist()[:GALLERY_LIMIT]
        return heading, gallery_items(rows), paths

    def show_cell(state, value):
        run = state.job.snapshot() if state and state.job else None
        if not run or run.predictions is None or not value or "," not in value:
            return gr.Markdown(), gr.Gallery(), []
        i, j = (int(v) for v in value.split(",")[:2])
        rows = cell_images(run.predictions, run.classes[i], run.classes[j])
        kind = "correct" if i == j else "confused"
        return show(
            rows,
            f"**{len(rows)} images** of true class **{run.classes[i]}** predicted as "
            f"**{run.classes[j]}** ({kind}), latest epoch",
        )

    def show_top(state):
        run = state.job.snapshot() if state and state.job else None
        if not run or run.predictions is None:
            raise gr.Error("Train a model first: the top losses come from its validation images.")
        return show(
            top_losses(run.predictions),
            "**Top losses:** the validation images the model "
            "is most wrong about, worst first. Look here for mislabelled images.",
        )

    @user_errors
    def pick(state, paths, evt: gr.SelectData):
        run = state.job.snapshot() if state and state.job else None
        if not run or not run.best_epoch or evt.index is None or evt.index >= len(paths):
            return gr.Image(), gr.Markdown(), gr.Dropdown(), None
        path = paths[evt.index]
        row = run.predictions[run.predictions["path"] == path].iloc[0]
        image, method = state.predictor(run.run_dir).explain(path, row["predicted"])
        text = (
            f"**{Path(path).name}** — labelled **{row['true']}**, predicted **{row['predicted']}** "
            f"({row['confidence']:.0%}). Heat map: {method} for '{row['predicted']}'."
        )
        return image, text, gr.Dropdown(choices=state.dataset.classes, value=row["true"]), path

    def fixed(state, corrections: Corrections):
        state.dataset = state.original.corrected(corrections)
        n = len(corrections)
        note = (
            f"**{n} correction{'s' if n != 1 else ''}** recorded "
            f"({len(corrections.relabel)} moved, {len(corrections.exclude)} left out); they "
            "apply to your next run: press **Train**."
        )
        return (state, note, *data_views(state.dataset), gr.Button(visible=n > 0))

    def check_current(state, path):
        if not path:
            raise DataError("Click an image first.")
        if path not in set(state.original.samples["path"]):
            raise DataError(
                "This image belongs to data that is no longer loaded: train on the "
                "current data, then fix its images."
            )

    @user_errors
    def move(state, path, label):
        check_current(state, path)
        if not label:
            raise DataError("Choose the image's class first.")
        corrections = state.corrections()
        corrections.move(state.original.relative(path), label)
        return fixed(state, corrections)

    @user_errors
    def leave_out(state, path):
        check_current(state, path)
        corrections = state.corrections()
        corrections.drop(state.original.relative(path))
        return fixed(state, corrections)

    cell.change(show_cell, [session, cell], [title, gallery, shown], api_name="show_cell")
    top_btn.click(show_top, session, [title, gallery, shown], api_name="top_losses")
    gallery.select(pick, [session, shown], [heat, about, fix_class, picked])
    fix_outputs = [session, fixes, data["summary"], data["report"], data["skipped"], retrain_btn]
    move_btn.click(move, [session, picked, fix_class], fix_outputs, api_name="move_image")
    drop_btn.click(leave_out, [session, picked], fix_outputs, api_name="leave_out_image")
    retrain_btn.click(train["start"], train["inputs"], train["outputs"], api_visibility="private")


def _use_step(settings: AppSettings, session: gr.State, train: dict) -> None:
    gr.Markdown("## 5 · Try the model", elem_classes="tl-step")
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

    def trained(state) -> Predictor:
        run = state.job.snapshot() if state and state.job else None
        if not run or not run.best_epoch:
            raise DataError("Train a model first: predictions use the best epoch of your run.")
        return state.predictor(run.run_dir)

    @user_errors
    def predict(state, path):
        if not path:
            return None, None
        predictor = trained(state)
        return dict(predictor.top_k(path, 5)), predictor.explain(path)[0]

    @user_errors
    def predict_many(state, files):
        if not files:
            return None, gr.DownloadButton(visible=False)
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
        return found.round(4), gr.DownloadButton(
            value=str(out), visible=True, label=f"Download {len(found)} predictions (CSV)"
        )

    image.change(predict, [session, image], [result, heat], api_name="predict")
    batch.upload(predict_many, [session, batch], [table, csv], api_name="predict_many")


# Uploads keep only base names, so the class folders (the labels) would be lost. This script
# records each file's path inside the chosen folder in the hidden #upload-paths box before the
# upload starts: from webkitRelativePath when the folder is picked, and by walking the dropped
# directory entries when it is dropped (Gradio's own drop handler sees only top-level files).
PAGE_JS = """
<script>
(() => {
  const describe = (file, path) =>
    ({path: path || file.webkitRelativePath || file.name, size: file.size});
  function report(list) {
    const box = document.querySelector("#upload-paths textarea, #upload-paths input");
    if (!box) return;
    box.value = JSON.stringify(list);
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    if (!input.closest("#upload")) return;
    if (input.dataset.tlappFed) { delete input.dataset.tlappFed; return; }
    report(Array.from(input.files || []).map((f) => describe(f)));
  }, true);
  const fileOf = (entry) => new Promise((ok, fail) => entry.file(ok, fail));
  const batchOf = (reader) => new Promise((ok, fail) => reader.readEntries(ok, fail));
  async function walk(entry, prefix, out) {
    if (entry.isFile) { out.push([await fileOf(entry), prefix + entry.name]); return; }
    const reader = entry.createReader();
    for (let batch = await batchOf(reader); batch.length; batch = await batchOf(reader)) {
      for (const child of batch) await walk(child, prefix + entry.name + "/", out);
    }
  }
  // A click on a confusion-matrix cell asks for its images (a fresh value on every click).
  document.addEventListener("click", (event) => {
    const cell = event.target instanceof Element && event.target.closest("#confusion-matrix td[data-cell]");
    const box = document.querySelector("#cm-cell textarea, #cm-cell input");
    if (!cell || !box) return;
    box.value = `${cell.dataset.cell},${Date.now()}`;
    box.dispatchEvent(new Event("input", {bubbles: true}));
  });
  document.addEventListener("drop", async (event) => {
    const zone = event.target instanceof Element && event.target.closest("#upload");
    if (!zone || !event.dataTransfer) return;
    const entries = Array.from(event.dataTransfer.items || [])
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    if (!entries.some((entry) => entry.isDirectory)) {
      report(Array.from(event.dataTransfer.files).map((f) => describe(f)));
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    const found = [];
    for (const entry of entries) await walk(entry, "", found);
    report(found.map(([file, path]) => describe(file, path)));
    const input = zone.querySelector('input[type="file"]');
    const transfer = new DataTransfer();
    found.forEach(([file]) => transfer.items.add(file));
    input.files = transfer.files;
    input.dataset.tlappFed = "1";
    input.dispatchEvent(new Event("change", {bubbles: true}));
  }, true);
})();
</script>
"""


def launch_kwargs(settings: AppSettings) -> dict:
    return {
        "theme": gr.themes.Soft(),
        "css": CSS,
        "head": PAGE_JS,
        "allowed_paths": [str(settings.home / "sessions")],  # random per-visitor folder names
    }
