"""What the page shows, as plain data: curve tables, the confusion matrix as HTML, galleries.

Pure functions of a Dataset or a RunState snapshot; no gradio here, so they are cheap to test
and the UI module stays about wiring widgets.

    frame = step_loss_frame(state)            # a table for a LinePlot, or None before any step
    html = confusion_html(cm, classes)        # clickable cells: data-cell="true,predicted"
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .data import Dataset, ImageError, open_image
from .train.state import RunState

MAX_PLOT_POINTS = 300


def health_summary(findings: pd.DataFrame | None) -> pd.DataFrame:
    """The health findings, one line each; a single reassuring line when there are none."""
    if findings is None or not len(findings):
        return pd.DataFrame(
            {
                "finding": ["all clear"],
                "detail": [
                    "no duplicates, leakage, imbalance, tiny images or grey-among-colour found"
                ],
                "images": [0],
            }
        )
    return pd.DataFrame(
        {
            "finding": findings["finding"],
            "detail": findings["detail"],
            "images": findings["paths"].map(len),
        }
    )


def data_views(dataset: Dataset) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    problems = dataset.problems()
    verdict = f"**Cannot train yet:** {problems[0]}" if problems else "**Ready to train.**"
    notes = "".join(f"\n\n**Note:** {w}" for w in dataset.warnings())
    return f"{dataset.summary()}\n\n{verdict}{notes}", dataset.report(), dataset.skipped


# ----------------------------------------------------------------------------- live views
def downsample(values: list[float], limit: int = MAX_PLOT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(positions, means) with at most `limit` points, so long runs stay cheap to draw."""
    y = np.asarray(values, dtype=np.float64)
    if len(y) <= limit:
        return np.arange(1, len(y) + 1, dtype=np.float64), y
    edges = np.linspace(0, len(y), limit + 1).astype(int)
    means = np.array([y[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    return (edges[:-1] + edges[1:]) / 2 + 0.5, means


# Gradio's LinePlot fixes its series on the first data it draws, so each plot gets data only
# once every one of its series has points, and an empty frame is never sent.
STEP_COLORS = {"train (each step)": "#3b82f6"}
EPOCH_COLORS = {"train": "#1d4ed8", "validation": "#ea580c"}
ACCURACY_COLORS = {"validation accuracy": "#16a34a", "validation macro F1": "#7c3aed"}


def step_loss_frame(state: RunState) -> pd.DataFrame | None:
    if not state.step_losses:
        return None
    steps, losses = downsample(state.step_losses)
    return pd.DataFrame(
        {
            "epoch": steps / max(state.steps_per_epoch, 1),
            "loss": losses,
            "series": "train (each step)",
        }
    )


def _epoch_series(state: RunState, y: str, columns: dict[str, str]) -> pd.DataFrame | None:
    """One long table of per-epoch values, a series per column, for a LinePlot."""
    if not state.history:
        return None
    epochs = pd.DataFrame(state.history)
    return pd.concat(
        [
            pd.DataFrame({"epoch": epochs["epoch"].astype(float), y: epochs[col], "series": name})
            for col, name in columns.items()
        ],
        ignore_index=True,
    )


def epoch_loss_frame(state: RunState) -> pd.DataFrame | None:
    return _epoch_series(state, "loss", {"train_loss": "train", "val_loss": "validation"})


def accuracy_frame(state: RunState) -> pd.DataFrame | None:
    return _epoch_series(
        state,
        "value",
        {"val_accuracy": "validation accuracy", "val_macro_f1": "validation macro F1"},
    )


def confusion_html(cm: np.ndarray | None, classes: list[str]) -> str:
    """The confusion matrix as a table; cell shade is the share of the true class (row)."""
    if cm is None:
        return "<p class='tl-muted'>The confusion matrix appears after the first epoch.</p>"
    names = [html.escape(c) for c in classes]
    head = "".join(f"<th class='tl-pred'>{n}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        total = max(int(cm[i].sum()), 1)
        cells = "".join(_cm_cell(int(v), v / total, i, j) for j, v in enumerate(cm[i]))
        rows.append(f"<tr><th class='tl-true'>{name}</th>{cells}</tr>")
    return (
        "<div class='tl-cm'><table><caption>rows: true class · columns: predicted class"
        f"</caption><thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _cm_cell(count: int, share: float, i: int, j: int) -> str:
    hue = "22, 163, 74" if i == j else "220, 38, 38"  # green when right, red when confused
    alpha = 0.08 + 0.85 * share if count else 0.0
    ink = "#fff" if alpha > 0.55 else "inherit"
    return (
        f"<td data-cell='{i},{j}' style='background: rgba({hue}, {alpha:.2f}); color: {ink}' "
        f"title='{count} images ({share:.0%} of the row): click to see them'>{count}</td>"
    )


def per_class_view(state: RunState) -> tuple[str, pd.DataFrame | None]:
    if not state.history:
        return "", None
    last = state.history[-1]
    best = (
        f" · best so far: epoch {state.best_epoch} ({state.best_accuracy:.1%}; validation "
        "chooses the epoch)"
        if state.has_model
        else ""
    )
    text = (
        f"Epoch {last['epoch']}: accuracy **{last['val_accuracy']:.1%}**, "
        f"macro F1 **{last['val_macro_f1']:.3f}**{best}"
    )
    return text, state.per_class.round(3)


def headline_markdown(test: dict | None, val_accuracy: float, best_epoch) -> str:
    """The run's accuracy as a user should read it: the test score, on images used neither to
    train nor to choose, with its 95% interval; validation named as the figure that chose."""
    chose = f"Validation accuracy {val_accuracy:.1%} chose the kept epoch (epoch {best_epoch})"
    if not test:
        return (
            f"### Validation accuracy: {val_accuracy:.1%}\n"
            "This run had no test images, so this is its only figure, and it is optimistic: "
            "the same images chose the kept epoch. Keep a test share (the data step) or a "
            "test/ folder for an estimate on new images, or ask *How sure is this accuracy?*"
        )
    low, high = test.get("accuracy_low"), test.get("accuracy_high")
    interval = f" (95% interval {low:.0%}–{high:.0%})" if low is not None else ""
    correct = test.get("correct", round(test["accuracy"] * test["images"]))
    return (
        f"### Accuracy on new images: {test['accuracy']:.1%}{interval}\n"
        f"Right {correct} times in {test['images']} on test images it never trained on and "
        f"that played no part in choosing it; macro F1 {test['macro_f1']:.3f}. "
        f"{chose}, so that figure is optimistic and this one is not."
    )


def status_markdown(state: RunState) -> str:
    word = {
        "done": "Finished",
        "stopped": "Stopped",
        "diverged": "Diverged",
        "failed": "Failed",
        "queued": "Queued",
        "training": "Training",
    }.get(state.status, "Starting")
    lines = [f"**{word}** · {state.progress_line()}"]
    if state.finished and state.has_model:
        lines.append(headline_markdown(state.test, state.best_accuracy, state.best_epoch))
    lines += [f"**Note:** {note}" for note in state.notes]
    if state.weights_note:
        warn = state.weights_fell_back
        lines.append(
            f"**Warning — weights:** {state.weights_note}"
            if warn
            else f"Weights: {state.weights_note}"
        )
    if state.freeze_note:
        lines.append(state.freeze_note)
    if state.recipe:
        lines.append("**Recipe:** " + " ".join(state.recipe))
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------- galleries
GALLERY_LIMIT = 48


def thumbnail(path: str, size: int = 256):
    """A small copy of an image for a gallery (served from memory, whatever folder it is in)."""
    try:
        image = open_image(path, draft_size=size)
    except ImageError:
        image = Image.new("RGB", (size, size), (200, 200, 200))
    image.thumbnail((size, size))
    return image


def _caption(row) -> str:
    return (
        f"{Path(row.path).name} · true: {row.true} · predicted: {row.predicted} "
        f"({row.confidence:.0%}) · loss {row.loss:.2f}"
    )


def cell_images(predictions: pd.DataFrame | None, true: str, predicted: str) -> pd.DataFrame:
    """The validation images of one confusion-matrix cell, least confident in the truth first."""
    if predictions is None:
        return pd.DataFrame(columns=["path", "true", "predicted", "confidence", "loss"])
    cell = predictions[(predictions["true"] == true) & (predictions["predicted"] == predicted)]
    return cell.sort_values("loss", ascending=False)


def top_losses(predictions: pd.DataFrame | None, k: int = 24) -> pd.DataFrame:
    """The validation images the model is most wrong about: first place to look for bad labels."""
    if predictions is None:
        return pd.DataFrame(columns=["path", "true", "predicted", "confidence", "loss"])
    return predictions.sort_values("loss", ascending=False).head(k)


def gallery_items(rows: pd.DataFrame, limit: int = GALLERY_LIMIT) -> list[tuple]:
    return [(thumbnail(r.path), _caption(r)) for r in rows.head(limit).itertuples()]


def reliability_html(reliability: pd.DataFrame | None) -> str:
    """Calibration as a table a non-expert can read: for each band of stated confidence, how
    often the model was right, drawn as two bars (said vs. right)."""
    if reliability is None or not len(reliability):
        return "<p class='tl-muted'>Calibration appears after the first epoch.</p>"
    rows = []
    for r in reliability.itertuples():
        rows.append(
            f"<tr><td>{r.bin_low:.0%}–{r.bin_high:.0%}</td>"
            f"<td><div class='tl-bar tl-said' style='width:{r.confidence * 100:.0f}%'></div>"
            f"<div class='tl-bar tl-right' style='width:{r.accuracy * 100:.0f}%'></div></td>"
            f"<td>{r.confidence:.0%}</td><td>{r.accuracy:.0%}</td><td>{r.count}</td></tr>"
        )
    return (
        "<div class='tl-cal'><table><thead><tr><th>when it says</th><th>said (grey) vs right "
        "(blue)</th><th>said</th><th>right</th><th>images</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def calibration_text(state: RunState) -> str:
    if not state.history or "val_ece" not in state.history[-1]:
        return ""
    ece = state.history[-1]["val_ece"]
    verdict = (
        "well calibrated"
        if ece < 0.05
        else "somewhat over- or under-confident"
        if ece < 0.15
        else "poorly calibrated: treat its confidence with care"
    )
    return (
        f"Expected calibration error **{ece:.3f}** ({verdict}): on average the confidence it "
        f"states is {100 * ece:.1f} points away from how often it is right. The table shows "
        "each band of stated confidence: for a well-calibrated model the two bars match, and "
        "90% confident means right 9 times in 10."
    )
