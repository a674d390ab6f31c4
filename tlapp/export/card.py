"""The model card of a run, and the usage code it shows (also shown on the page).

    text = model_card("runs/mine", repo_id="me/flowers")   # README.md: metadata and prose
    print(usage_snippet("runs/mine"))                     # timm code that loads the local run
    print(onnx_snippet("runs/mine"))                      # the same with ONNX Runtime
    public_record("runs/mine")                            # run.json with local paths cut

What is published never names the computer it was trained on: the app's record and the card
cut local paths to their last part.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from .. import runs
from .onnx import ONNX_FILE

MATRIX_IMAGE = "confusion_matrix.png"  # the picture of the confusion matrix the card shows


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
    interval = (scored.get("accuracy_low"), scored.get("accuracy_high"))
    return {
        "val": val,
        "test": test,
        "epoch": epoch,
        "test_images": scored.get("images"),
        "test_interval": interval if all(map(_number, interval)) else None,
    }


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
    if test:  # the figure to expect on new images comes first
        said = ", ".join(f"{METRIC_NAMES[k]} **{_pct(v)}**" for k, v in test.items())
        count = scores.get("test_images")
        count = f"{count} " if count else ""
        interval = scores.get("test_interval")
        interval = f" (accuracy's 95% interval: {_pct(interval[0])} to {_pct(interval[1])})"
        out += [
            f"On the {count}test images, used neither for training nor for choosing the "
            f"model and scored once at the end: {said}"
            f"{interval if scores.get('test_interval') else ''}.",
            "",
        ]
    if val:
        said = ", ".join(f"{METRIC_NAMES[k]} **{_pct(v)}**" for k, v in val.items())
        out += [
            f"On the {val_images} validation images: {said}. The kept epoch was chosen on "
            "these images, so the figure is somewhat optimistic.",
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
