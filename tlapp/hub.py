"""A run on the Hugging Face Hub: its model card, a usage snippet, and the upload.

    text = model_card("runs/mine", repo_id="me/flowers")   # README.md, metadata and prose
    print(usage_snippet("runs/mine"))                     # timm code that loads the local run
    url = push_to_hub("runs/mine", "me/flowers")          # private unless private=False

The repository holds what a timm user needs and what the card cites: timm's config.json, the
weights, the app's record (run.json, with local paths cut to their last part), metrics.csv,
per_class.csv, confusion_matrix.csv with a picture of it, and model.onnx when the run has one.
The resume checkpoint and val_predictions.csv (which lists the paths of the user's images) stay
home. The token comes from the caller, else HF_TOKEN or huggingface_hub's stored login; it is
only handed to huggingface_hub, never written anywhere.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from . import runs
from .export import ONNX_FILE

CARD, MATRIX_IMAGE = "README.md", "confusion_matrix.png"
# The run folder's files that go to the hub, in this order; the card and the picture are added.
HUB_FILES = (
    runs.CONFIG,
    runs.WEIGHTS,
    runs.RECORD,
    runs.METRICS,
    runs.PER_CLASS,
    runs.CONFUSION,
    ONNX_FILE,
)
TAGS = ["image-classification", "timm", "tlapp"]
PHOTO = "photo.jpg"  # the image the snippets classify
# TrainConfig settings that are paths on the computer that trained the run.
PATH_SETTINGS = ("data", "out", "runs_root", "cache_dir", "corrections", "weights")
WEIGHT_WORDS = {"auto", "pretrained", "none", ""}

TIMM_SNIPPET = """\
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

model = timm.create_model({source}, pretrained=True).eval()
transform = create_transform(**resolve_data_config(model=model))
image = transform(Image.open("{photo}").convert("RGB")).unsqueeze(0)
with torch.inference_mode():
    probabilities = model(image).softmax(dim=-1)[0]
label = model.pretrained_cfg["label_names"][int(probabilities.argmax())]
print(label, f"{{float(probabilities.max()):.1%}}")
"""

ONNX_SNIPPET = """\
import json

import onnxruntime as ort
from PIL import Image
from timm.data import create_transform
{download}
session = ort.InferenceSession({path}, providers=["CPUExecutionProvider"])
meta = {{k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}}
keys = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")
transform = create_transform(**{{k: meta[k] for k in keys if k in meta}})
pixels = transform(Image.open("{photo}").convert("RGB")).unsqueeze(0).numpy()
onnx_label = meta["classes"][int(session.run(None, {{"input": pixels}})[0][0].argmax())]
print(onnx_label)
"""


# ----------------------------------------------------------------------------- snippets
def usage_snippet(run_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """Python that loads the model with timm and classifies one image: from the hub repository
    `repo_id`, or from the run folder itself (`local-dir:`) when there is none."""
    source = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{_posix(run_dir)}"
    return TIMM_SNIPPET.format(source=json.dumps(source), photo=PHOTO)


def onnx_snippet(run_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """The same with ONNX Runtime and the run's model.onnx; empty when it has none."""
    if not (Path(run_dir) / ONNX_FILE).is_file():
        return ""
    if repo_id:
        download = (
            "from huggingface_hub import hf_hub_download\n\n"
            f"path = hf_hub_download({json.dumps(repo_id)}, {json.dumps(ONNX_FILE)})"
        )
        path = "path"
    else:
        download, path = "", json.dumps(f"{_posix(run_dir)}/{ONNX_FILE}")
    return ONNX_SNIPPET.format(download=download + "\n" if download else "", path=path, photo=PHOTO)


def _posix(run_dir: str | os.PathLike) -> str:
    return Path(run_dir).resolve().as_posix()


# ----------------------------------------------------------------------------- the card
def model_card(run_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """The repository's README.md: YAML metadata (timm, image classification, the scores in
    model-index) and what the model classifies, its data, recipe, results and limits. The
    snippets load `repo_id` from the hub, or the run folder when it is None."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run_dir = Path(run_dir)
    info = runs.read_config(run_dir)
    scores = _scores(run_dir, info)
    name = (repo_id or run_dir.name).split("/")[-1]
    results = []
    for split, values in (("validation", scores["val"]), ("test", scores["test"])):
        for metric, value in values.items():
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image classification",
                    dataset_type="imagefolder",
                    dataset_name="Own labelled images",
                    dataset_split=split,
                    metric_type=metric,
                    metric_name=f"{split.capitalize()} {METRIC_NAMES[metric]}",
                    metric_value=round(float(value), 4),
                    metric_args={"average": "macro"} if metric == "f1" else None,
                )
            )
    base = base_model(info)
    data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=_license(run_dir, info),
        tags=TAGS,
        base_model=base,
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=name,
        eval_results=results or None,
    )
    body = _body(run_dir, info, scores, name, base, repo_id)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")  # parsed back: the YAML is valid
    return str(card)


METRIC_NAMES = {"accuracy": "accuracy", "f1": "macro F1"}


def _scores(run_dir: Path, info: dict) -> dict:
    """Validation accuracy and macro F1 of the kept epoch, and the test split's when scored."""
    rows = runs.read_metrics(run_dir)
    epoch = info.get("best_epoch")
    row = next((r for r in rows if r.get("epoch") == epoch), None)
    if row is None and rows:  # a run that ended before recording it: the best row was saved
        row = max(rows, key=lambda r: r.get("val_accuracy", 0))
        epoch = row.get("epoch")
    val = {}
    accuracy = info.get("best_val_accuracy")
    if accuracy is None and row is not None:
        accuracy = row.get("val_accuracy")
    if _number(accuracy):
        val["accuracy"] = float(accuracy)
    f1 = row.get("val_macro_f1") if row else None
    if not _number(f1):
        table = _per_class(run_dir)
        f1 = table["f1"].mean() if table is not None and len(table) else None
    if _number(f1):
        val["f1"] = float(f1)
    test = {}
    scored = info.get("test") or {}
    if _number(scored.get("accuracy")):
        test["accuracy"] = float(scored["accuracy"])
    if _number(scored.get("macro_f1")):
        test["f1"] = float(scored["macro_f1"])
    return {"val": val, "test": test, "epoch": epoch, "test_images": scored.get("images")}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _per_class(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / runs.PER_CLASS
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else None


def base_model(info: dict) -> str | None:
    """The hub repository of the starting weights, when the run started from pretrained ones
    (run.json's weights_used reads 'pretrained (timm/resnet18.a1_in1k)')."""
    if not info.get("pretrained"):
        return None
    found = re.match(r"pretrained \(([^,)\s]+)", str(info.get("weights_used", "")))
    repo = found.group(1) if found else ""
    return repo if re.fullmatch(r"[\w.-]+/[\w.-]+", repo) else None


def _license(run_dir: Path, info: dict) -> str | None:
    """The licence the starting weights were released under, as timm's config records it;
    None (left out of the card) for random or own weights, whose terms nobody recorded."""
    if not info.get("pretrained"):
        return None
    with_cfg = _timm_config(run_dir).get("pretrained_cfg") or {}
    value = with_cfg.get("license")
    return value if isinstance(value, str) and value else None


def _timm_config(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / runs.CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _md(text) -> str:
    """A class name or note, safe inside a Markdown table or sentence."""
    return (
        str(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _body(
    run_dir: Path, info: dict, scores: dict, name: str, base: str | None, repo_id: str | None
) -> str:
    classes = [str(c) for c in info.get("classes", [])]
    config = info.get("config", {})
    images = (info.get("dataset") or {}).get("images", {})
    total = sum(int(images.get(s) or 0) for s in ("train", "val", "test"))
    val_images = int(images.get("val") or 0)
    arch = info.get("arch", "")
    start = (
        f"fine-tuned from the pretrained weights [`{base}`](https://huggingface.co/{base})"
        if base
        else f"trained from {_md(_weights_sentence(info))}"
    )
    out = [
        f"# {_md(name)}",
        "",
        f"An image classifier that tells apart {len(classes)} classes, trained with tlapp on "
        f"{total} images of its owner's own data. It is a timm `{arch}`, {start}.",
        "",
        "## Classes",
        "",
        "The model answers with one of these classes (index: name), as "
        '`model.pretrained_cfg["label_names"]` lists them:',
        "",
        *(f"{i}. {_md(c)}" for i, c in enumerate(classes)),
        "",
        "## How to use it",
        "",
        "With timm (`pip install timm`):",
        "",
        "```python",
        usage_snippet(run_dir, repo_id).rstrip(),
        "```",
        "",
    ]
    onnx = onnx_snippet(run_dir, repo_id)
    if onnx:
        out += [
            f"The repository also holds `{ONNX_FILE}`, checked against the PyTorch model on the "
            "validation images when it was exported. It takes a float NCHW batch preprocessed "
            "as its metadata says and returns logits; the class names are in its metadata too. "
            "With ONNX Runtime (`pip install onnxruntime timm`):",
            "",
            "```python",
            onnx.rstrip(),
            "```",
            "",
        ]
    out += [
        "## Training data",
        "",
        f"{total} labelled images of {len(classes)} classes, supplied by the model's owner "
        "(they are not published here):",
        "",
        "| split | images |",
        "|---|---:|",
        *(
            f"| {split} | {int(images.get(key) or 0)} |"
            for key, split in SPLITS
            if images.get(key) or key != "test"
        ),
        "",
    ]
    skipped = (info.get("dataset") or {}).get("skipped_files")
    if skipped:
        out += [f"{skipped} files could not be read as images and were left out.", ""]
    out += ["## Training recipe", ""]
    out += [f"- {_md(line)}" for line in info.get("recipe") or []]
    if info.get("head_fit"):
        out.append(f"- {_md(info['head_fit'])}")
    settings = [
        f"starting weights: {_md(_public(info.get('weights_used', ''), info, run_dir))}",
        f"frozen: {_md((info.get('freeze') or {}).get('description', config.get('freeze', '')))}",
        f"image size {config.get('img_size', '?')}, batch size "
        f"{info.get('batch_size_used') or config.get('batch_size', '?')}, "
        f"epochs: {config.get('epochs', '?')}, learning rate {config.get('lr', '?')}",
        f"augmentation: {'on' if config.get('augment') else 'off'}",
    ]
    if scores["epoch"] is not None:
        which = " (phase one's fitted head)" if scores["epoch"] == 0 else ""
        settings.append(f"kept: epoch {scores['epoch']}{which}, the best on validation")
    versions = info.get("versions") or {}
    if versions:
        settings.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    out += ["", "Settings:", "", *(f"- {line}" for line in settings), ""]
    out += _results(run_dir, scores, val_images)
    out += _limitations(classes, total, val_images)
    out += [
        "## Files",
        "",
        "- `config.json`, `model.safetensors`: the model, as timm loads it",
        "- `run.json`: the training record (settings, data summary, recipe, scores)",
        "- `metrics.csv`: one row per epoch; `per_class.csv`, `confusion_matrix.csv` (and its "
        "picture): the kept epoch's validation results",
    ]
    if onnx:
        out.append(f"- `{ONNX_FILE}`: the model for ONNX Runtime")
    return "\n".join(out) + "\n"


SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))


def _weights_sentence(info: dict) -> str:
    note = str(info.get("weights_used", ""))
    if note.startswith("random") or note.startswith("RANDOM"):
        return "random initialisation (no pretrained weights)"
    return "the weights of an earlier model (its backbone)"


def _results(run_dir: Path, scores: dict, val_images: int) -> list[str]:
    val, test = scores["val"], scores["test"]
    out = ["## Results", ""]
    if val:
        said = ", ".join(f"{METRIC_NAMES[k]} **{_pct(v)}**" for k, v in val.items())
        out += [
            f"On the {val_images} validation images: {said}. The kept epoch was chosen on "
            "these images, so the figure is somewhat optimistic.",
            "",
        ]
    if test:
        said = ", ".join(f"{METRIC_NAMES[k]} **{_pct(v)}**" for k, v in test.items())
        count = scores.get("test_images")
        count = f"{count} " if count else ""
        out += [
            f"On the {count}test images, scored once at the end and never used to choose "
            f"anything: {said}.",
            "",
        ]
    table = _per_class(run_dir)
    if table is not None and len(table):
        out += [
            "Per class, on the validation images:",
            "",
            "| class | precision | recall | F1 | images |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in table.to_dict("records"):
            out.append(
                f"| {_md(row['class'])} | {_pct(float(row['precision']))} | "
                f"{_pct(float(row['recall']))} | {_pct(float(row['f1']))} | "
                f"{int(row['support'])} |"
            )
        out.append("")
    if (run_dir / runs.CONFUSION).is_file():
        out += [
            f"![Confusion matrix: true classes as rows, predicted as columns]({MATRIX_IMAGE})",
            "",
            "The confusion matrix on the validation images (true classes as rows, predicted as "
            "columns; shading is the share of each row). The counts are in "
            "`confusion_matrix.csv`.",
            "",
        ]
    return out


def _limitations(classes: list[str], total: int, val_images: int) -> list[str]:
    step = (
        f" (each validation image is worth {1 / val_images:.1%} of accuracy)" if val_images else ""
    )
    return [
        "## Intended use and limitations",
        "",
        f"- It was trained on {total} images of its owner's data and knows only the "
        f"{len(classes)} classes above: it puts every image in one of them, even an image of "
        "something else entirely.",
        f"- The scores come from {val_images} validation images{step}; with few images they "
        "are rough estimates. Images unlike the training ones (other cameras, lighting, "
        "backgrounds, subjects) can do much worse.",
        "- Check it on your own images before relying on it, and keep a person in the loop "
        "where mistakes matter.",
        "- It is not meant for medical, legal, safety-critical or other high-stakes decisions "
        "without proper, independent validation.",
        "- Any bias in the training images (how classes were photographed, who or what is "
        "shown, labelling mistakes) carries over into its answers.",
        "",
    ]


# ----------------------------------------------------------------------------- the picture
def confusion_png(run_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """confusion_matrix.csv drawn as a picture: rows shaded by their share, counts in cells."""
    frame = pd.read_csv(Path(run_dir) / runs.CONFUSION, index_col=0)
    image = draw_confusion(frame.to_numpy(dtype=float), [str(c) for c in frame.columns])
    dest = Path(dest)
    image.save(dest, format="PNG", optimize=True)
    return dest


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: the small bitmap font
        return ImageFont.load_default()


def draw_confusion(counts: np.ndarray, classes: list[str]) -> Image.Image:
    n = max(len(classes), 1)
    cell = int(np.clip(800 // n, 3, 56))
    font = _font(int(np.clip(cell // 3, 10, 14)))
    labels = [c if len(c) <= 24 else c[:23] + "…" for c in classes] if cell >= 10 else []
    label_w = max((_size(t, font)[0] for t in labels), default=0) + 10
    left = top = label_w + 26
    image = Image.new("RGB", (left + n * cell + 12, top + n * cell + 12), "white")
    draw = ImageDraw.Draw(image)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    low, high = np.array([247, 251, 255]), np.array([8, 69, 148])
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = tuple(int(v) for v in low + (high - low) * share[i, j])
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell, top + (i + 1) * cell)
            draw.rectangle(box, fill=colour, outline=(200, 200, 200) if cell >= 10 else None)
            if cell >= 22:
                ink = "white" if share[i, j] > 0.5 else "black"
                _write(
                    draw, str(int(counts[i, j])), font, box[0] + cell / 2, box[1] + cell / 2, ink
                )
    for i, text in enumerate(labels):
        width = _size(text, font)[0]
        _write(draw, text, font, left - 6 - width / 2, top + i * cell + cell / 2)
        column = _rotated(text, font)
        x, y = left + i * cell + cell / 2 - column.width / 2, top - 6 - column.height
        image.paste(column, (int(x), int(y)), column)
    _write(draw, "predicted", font, left + n * cell / 2, 12)
    true = _rotated("true", font)
    image.paste(true, (4, int(top + n * cell / 2 - true.height / 2)), true)
    return image


def _size(text: str, font) -> tuple[int, int]:
    box = font.getbbox(text)
    return box[2] - box[0], box[3] - box[1]


def _write(draw: ImageDraw.ImageDraw, text: str, font, x: float, y: float, ink="black") -> None:
    """`text` centred on (x, y); by its box, as the small bitmap font has no anchors."""
    box = font.getbbox(text)
    draw.text((x - (box[0] + box[2]) / 2, y - (box[1] + box[3]) / 2), text, fill=ink, font=font)


def _rotated(text: str, font) -> Image.Image:
    """The text written bottom to top, on a transparent image."""
    box = font.getbbox(text)
    canvas = Image.new("LA", (box[2] + 2, box[3] + 2), (0, 0))
    ImageDraw.Draw(canvas).text((1, 1), text, fill=(0, 255), font=font)
    return canvas.rotate(90, expand=True).convert("RGBA")


# ----------------------------------------------------------------------------- the upload
def hub_files(run_dir: str | os.PathLike) -> list[Path]:
    """The run folder's files that belong on the hub (those of HUB_FILES it has)."""
    run_dir = Path(run_dir)
    return [run_dir / name for name in HUB_FILES if (run_dir / name).is_file()]


def public_record(run_dir: str | os.PathLike) -> dict:
    """run.json with the paths of the computer that trained it cut to their last part."""
    run_dir = Path(run_dir)
    info = runs.read_config(run_dir)
    return _scrub(info, _local_paths(run_dir, info))


def _local_paths(run_dir: Path, info: dict) -> list[str]:
    config = info.get("config") or {}
    found = {str(run_dir), str(run_dir.resolve())}
    for key in PATH_SETTINGS:
        value = config.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in WEIGHT_WORDS:
            found.add(value)
    source = (info.get("dataset") or {}).get("source")
    if isinstance(source, str) and source:
        found.add(source)
    expanded = set()
    for path in found:
        expanded |= {path, str(Path(path).resolve()), Path(path).resolve().as_posix()}
    # Longest first, so a folder inside another is replaced whole.
    return sorted((p for p in expanded if Path(p).name and p not in (".", "/")), key=len)[::-1]


def _scrub(value, paths: list[str]):
    if isinstance(value, dict):
        return {k: _scrub(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, paths) for v in value]
    if isinstance(value, str):
        for path in paths:
            if path in value:
                value = value.replace(path, Path(path).name)
        return value
    return value


def _public(text: str, info: dict, run_dir: Path) -> str:
    return _scrub(str(text), _local_paths(run_dir, info))


def resolve_token(token: str | None = None, stored: bool = True) -> str:
    """The token given, else (when `stored`) HF_TOKEN or huggingface_hub's stored login."""
    token = (token or "").strip()
    if not token and stored:
        import huggingface_hub

        token = (os.environ.get("HF_TOKEN") or "").strip() or (huggingface_hub.get_token() or "")
    if not token:
        raise ValueError(
            "No Hugging Face token: give one with write access "
            "(https://huggingface.co/settings/tokens)"
            + (", set HF_TOKEN, or log in with `hf auth login`." if stored else ".")
        )
    return token


def push_to_hub(
    run_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = True,
    stored_token: bool = True,
) -> str:
    """Create (or reuse) the model repository `repo_id` and upload the run with its card;
    returns the repository's URL. `stored_token=False` refuses HF_TOKEN and the stored login
    (a public page must not publish with its server's account). Raises ValueError, one
    sentence, when there is no model, no token, or the hub cannot be reached or says no."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    run_dir = Path(run_dir)
    runs.read_config(run_dir)  # a run folder at all
    if not (run_dir / runs.WEIGHTS).is_file():
        raise ValueError(
            f"The run in '{run_dir}' has no saved model yet, so there is nothing to publish."
        )
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise ValueError("Name the Hub repository to publish to: name or user/name.")
    try:
        validate_repo_id(repo_id)
    except ValueError:
        raise ValueError(
            f"'{repo_id}' is not a Hub repository name: write it as name or user/name "
            "(letters, digits, '-', '_' and '.')."
        ) from None
    token = resolve_token(token, stored_token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = getattr(url, "repo_id", None) or repo_id  # with the user's name when omitted
        with tempfile.TemporaryDirectory(prefix="tlapp-hub-") as folder:
            folder = Path(folder)
            _fill(folder, run_dir, repo_id)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                commit_message=f"Upload {run_dir.name} (tlapp)",
                delete_patterns=[n for n in HUB_FILES if not (folder / n).exists()] or None,
            )
    except Exception as err:
        problem = _hub_problem(err)
        if problem is None:
            raise
        raise ValueError(problem) from None
    return str(url) if str(url).startswith("http") else f"https://huggingface.co/{repo_id}"


def _fill(folder: Path, run_dir: Path, repo_id: str) -> None:
    """The upload folder: the card, the picture, the run's hub files (run.json made public)."""
    for path in hub_files(run_dir):
        if path.name == runs.RECORD:
            text = json.dumps(public_record(run_dir), indent=2, ensure_ascii=False, default=str)
            (folder / path.name).write_text(text + "\n", encoding="utf-8")
        else:
            shutil.copy2(path, folder / path.name)
    if (run_dir / runs.CONFUSION).is_file():
        confusion_png(run_dir, folder / MATRIX_IMAGE)
    (folder / CARD).write_text(model_card(run_dir, repo_id), encoding="utf-8")


TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp"}
TRANSPORT_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "NetworkError",
    "ProxyError",
    "ReadTimeout",
    "SSLError",
    "TimeoutException",
    "Timeout",
    "TransportError",
    "WriteTimeout",
}


def _hub_problem(err: BaseException) -> str | None:
    """The sentence for a failure of the hub or of the connection to it; None for the rest."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "The Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set): unset it to publish."
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            return (
                "The Hugging Face Hub refused the token: check that it is valid, has write "
                "access, and may write to that user or organisation."
            )
        detail = getattr(err, "server_message", None) or str(err).splitlines()[0]
        return f"The Hugging Face Hub refused the upload (HTTP {status or '?'}: {detail})."
    transport = any(
        cls.__module__.split(".")[0] in TRANSPORT_MODULES and cls.__name__ in TRANSPORT_NAMES
        for cls in type(err).__mro__
    )
    if transport or isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):
        return (
            "The Hugging Face Hub could not be reached: check the internet connection "
            "(and any proxy) and try again."
        )
    return None
