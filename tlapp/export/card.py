"""The model card of a run: the README.md of its Hugging Face repository.

    text = model_card("runs/mine", repo_id="me/flowers")   # README.md: metadata and prose
    base_model(run_info)                                   # the hub weights it started from

The card shows the code that loads the model (`snippets`) and never names the computer it was
trained on: local paths in it are cut to their last part as in the published record (`public`).
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
from .public import public_text
from .snippets import PHOTO, onnx_snippet, usage_snippet  # noqa: F401  (PHOTO: tests read it here)

MATRIX_IMAGE = "confusion_matrix.png"  # the picture of the confusion matrix the card shows


TAGS = ["image-classification", "timm", "tlapp"]


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
    """The card's prose under its YAML metadata, section by section."""
    classes = [str(c) for c in info.get("classes", [])]
    images = (info.get("dataset") or {}).get("images", {})
    total = sum(int(images.get(s) or 0) for s in ("train", "val", "test"))
    val_images = int(images.get("val") or 0)
    onnx = onnx_snippet(run_dir, repo_id)
    out = _introduction(info, name, base, classes, total)
    out += _how_to_use(run_dir, repo_id, onnx)
    out += _training_data(info, images, total, len(classes))
    out += _training_recipe(run_dir, info, scores)
    out += _results(run_dir, scores, val_images)
    out += _limitations(classes, total, val_images)
    out += _files(onnx)
    return "\n".join(out) + "\n"


def _introduction(
    info: dict, name: str, base: str | None, classes: list[str], total: int
) -> list[str]:
    """The title, what the model is and where it started from, and its classes by index."""
    arch = info.get("arch", "")
    start = (
        f"fine-tuned from the pretrained weights [`{base}`](https://huggingface.co/{base})"
        if base
        else f"trained from {_md(_weights_sentence(info))}"
    )
    return [
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
    ]


def _how_to_use(run_dir: Path, repo_id: str | None, onnx: str) -> list[str]:
    """The timm snippet, and the ONNX Runtime one when the run was exported."""
    out = [
        "## How to use it",
        "",
        "With timm (`pip install timm`):",
        "",
        "```python",
        usage_snippet(run_dir, repo_id).rstrip(),
        "```",
        "",
    ]
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
    return out


def _training_data(info: dict, images: dict, total: int, classes: int) -> list[str]:
    """How many images each split had (the images themselves are never published)."""
    out = [
        "## Training data",
        "",
        f"{total} labelled images of {classes} classes, supplied by the model's owner "
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
    return out


def _training_recipe(run_dir: Path, info: dict, scores: dict) -> list[str]:
    """The recipe's own lines, then the settings that reproduce the run."""
    out = ["## Training recipe", ""]
    out += [f"- {_md(line)}" for line in info.get("recipe") or []]
    if info.get("head_fit"):
        out.append(f"- {_md(info['head_fit'])}")
    settings = _settings(run_dir, info)
    if scores["epoch"] is not None:
        which = " (phase one's fitted head)" if scores["epoch"] == 0 else ""
        settings.append(f"kept: epoch {scores['epoch']}{which}, the best on validation")
    versions = info.get("versions") or {}
    if versions:
        settings.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    return out + ["", "Settings:", "", *(f"- {line}" for line in settings), ""]


def _settings(run_dir: Path, info: dict) -> list[str]:
    """Starting weights (local paths cut), freeze, size, batch, epochs, rate, augmentation."""
    config = info.get("config", {})
    return [
        f"starting weights: {_md(public_text(info.get('weights_used', ''), info, run_dir))}",
        f"frozen: {_md((info.get('freeze') or {}).get('description', config.get('freeze', '')))}",
        f"image size {config.get('img_size', '?')}, batch size "
        f"{info.get('batch_size_used') or config.get('batch_size', '?')}, "
        f"epochs: {config.get('epochs', '?')}, learning rate {config.get('lr', '?')}",
        f"augmentation: {'on' if config.get('augment') else 'off'}",
    ]


def _files(onnx: str) -> list[str]:
    """What the repository holds, file by file."""
    out = [
        "## Files",
        "",
        "- `config.json`, `model.safetensors`: the model, as timm loads it",
        "- `run.json`: the training record (settings, data summary, recipe, scores)",
        "- `metrics.csv`: one row per epoch; `per_class.csv`, `confusion_matrix.csv` (and its "
        "picture): the kept epoch's validation results",
    ]
    if onnx:
        out.append(f"- `{ONNX_FILE}`: the model for ONNX Runtime")
    return out


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
        low_high = scores.get("test_interval")  # runs from before intervals have none
        interval = (
            f" (accuracy's 95% interval: {_pct(low_high[0])} to {_pct(low_high[1])})"
            if low_high
            else ""
        )
        out += [
            f"On the {count}test images, used neither for training nor for choosing the "
            f"model and scored once at the end: {said}{interval}.",
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
