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
ACCURACY_COLORS = {"right (share of images)": "#16a34a", "score per class (macro F1)": "#7c3aed"}


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
        {"val_accuracy": "right (share of images)", "val_macro_f1": "score per class (macro F1)"},
    )


def confusion_html(cm: np.ndarray | None, classes: list[str]) -> str:
    """The confusion matrix as a table; cell shade is the share of the true class (row)."""
    if cm is None:
        return ""  # the page hides the matrix until the first epoch has one
    names = [html.escape(c) for c in classes]
    head = "".join(f"<th class='tl-pred' scope='col'>{n}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        total = max(int(cm[i].sum()), 1)
        cells = "".join(_cm_cell(int(v), v / total, i, j) for j, v in enumerate(cm[i]))
        rows.append(f"<tr><th class='tl-true' scope='row'>{name}</th>{cells}</tr>")
    return (
        "<div class='tl-cm'><table><caption>rows: the real class · columns: what the model said"
        f"</caption><thead><tr><th scope='col'>real \\ said</th>{head}</tr></thead>"
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


def term(words: str, meaning: str) -> str:
    """Plain words on the page with the technical term and its meaning on hover."""
    return f"<abbr title='{html.escape(meaning, quote=True)}'>{words}</abbr>"


def per_class_view(state: RunState) -> tuple[str, pd.DataFrame | None]:
    """The latest epoch in one plain sentence (counts, not only a percentage), and the
    per-class table."""
    if not state.history:
        return "", None
    last = state.history[-1]
    counts = ""
    if state.confusion is not None and state.confusion.sum():
        right, seen = int(np.trace(state.confusion)), int(state.confusion.sum())
        counts = f"right **{right} times in {seen}** "
    best = (
        f" Best so far: epoch {state.best_epoch}, {state.best_accuracy:.0%} (the model kept)."
        if state.has_model and last["epoch"] != state.best_epoch
        else ""
    )
    f1 = term(
        f"score per class {last['val_macro_f1']:.2f}",
        "Macro F1: precision and recall combined for each class, then averaged, so a rare "
        "class counts as much as a common one (1 is perfect).",
    )
    text = (
        f"**Epoch {last['epoch']}:** {counts}on validation images it does not train on "
        f"(**{last['val_accuracy']:.1%}**); {f1}.{best}"
    )
    return text, state.per_class.round(3)


def headline_markdown(test: dict | None, val_accuracy: float, best_epoch) -> str:
    """The run's accuracy as a user should read it: the test score, on images used neither to
    train nor to choose, with its 95% interval; validation named as the figure that chose."""
    chose = (
        f"Validation accuracy {val_accuracy:.1%} chose the kept epoch (epoch {best_epoch}), so "
        "that figure is optimistic and this one is not."
    )
    if not test:
        return (
            f"### Validation accuracy: {val_accuracy:.1%}\n"
            "This run had no test images, so this is its only figure, and it is optimistic: "
            "the same images chose the kept epoch. Keep a test share (advanced settings) for an "
            "estimate on new images."
        )
    low, high = test.get("accuracy_low"), test.get("accuracy_high")
    interval = ""
    if low is not None:
        interval = (
            " ("
            + term(
                f"95% interval {low:.0%}–{high:.0%}",
                "With this few test images the true accuracy could lie anywhere in this range "
                "(Wilson interval, 95% confidence).",
            )
            + ")"
        )
    correct = test.get("correct", round(test["accuracy"] * test["images"]))
    f1 = term("More", f"Macro F1 on the test images {test['macro_f1']:.3f}. {chose}")
    return (
        f"### Accuracy on new images: {test['accuracy']:.1%}{interval}\n"
        f"Right {correct} times in {test['images']} on test images it never trained on and "
        f"that played no part in choosing it.{_class_by_class(test)} {f1}"
    )


def _class_by_class(test: dict) -> str:
    """Balanced accuracy in words, when it tells another story than accuracy (rare classes)."""
    balanced = test.get("balanced_accuracy")
    if balanced is None or abs(balanced - test["accuracy"]) < 0.01:
        return ""
    found = term(
        f"{balanced:.0%} of each class's images",
        "Balanced accuracy: each class's share found, averaged, so that a rare class counts as "
        "much as a common one.",
    )
    return f" Class by class it finds {found} on average."


STATUS_WORDS = {
    "done": "Finished",
    "stopped": "Stopped",
    "diverged": "Diverged",
    "failed": "Failed",
    "queued": "Queued",
    "training": "Training",
}


def status_markdown(state: RunState) -> str:
    """What a visitor needs at a glance: where the run is, its headline, and any warning; how
    it was set up is in `run_details_markdown`."""
    word = STATUS_WORDS.get(state.status, "Starting")
    progress = state.progress_line()
    if state.run_dir:  # the folder's name says which run; its full path is the server's business
        progress = progress.replace(str(state.run_dir), f"run {Path(state.run_dir).name}")
    lines = [f"**{word}** · {progress}"]
    if state.finished and state.has_model:
        lines.append(headline_markdown(state.test, state.best_accuracy, state.best_epoch))
    if state.weights_note and state.weights_fell_back:
        lines.append(f"**Warning — weights:** {state.weights_note}")
    if state.notes:
        n = len(state.notes)
        lines.append(f"{n} note{'s' * (n != 1)} on how it ran: *More about this run*, below.")
    return "\n\n".join(lines)


def run_details_markdown(state: RunState) -> str:
    """How the run went and was set up: its notes, starting weights, what was frozen, and its
    recipe."""
    lines = [f"**Note:** {note}" for note in state.notes]
    if state.weights_note and not state.weights_fell_back:
        lines.append(f"Weights: {state.weights_note}")
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
        "you can trust its confidence"
        if ece < 0.05
        else "its confidence is somewhat off"
        if ece < 0.15
        else "treat its confidence with care"
    )
    gap = term(
        f"{100 * ece:.1f} points",
        f"Expected calibration error {ece:.3f}: the gap between stated confidence and "
        "accuracy, averaged over the bands of confidence, weighted by their images.",
    )
    return (
        f"**Is it as sure as it should be?** On average, how sure it says it is lies {gap} "
        f"from how often it is right: {verdict}. For each band of stated confidence, the bars "
        "show how sure it said it was (grey) and how often it was right (blue): 90% sure should "
        "mean right 9 times in 10."
    )
