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

from . import runs
from .data import Dataset
from .engine import RunState

MAX_PLOT_POINTS = 300


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
        cells = "".join(_cm_cell(int(v), v / total, i == j) for j, v in enumerate(cm[i]))
        rows.append(f"<tr><th class='tl-true'>{name}</th>{cells}</tr>")
    return (
        "<div class='tl-cm'><table><caption>rows: true class · columns: predicted class"
        f"</caption><thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _cm_cell(count: int, share: float, diagonal: bool) -> str:
    hue = "22, 163, 74" if diagonal else "220, 38, 38"  # green when right, red when confused
    alpha = 0.08 + 0.85 * share if count else 0.0
    ink = "#fff" if alpha > 0.55 else "inherit"
    return (
        f"<td style='background: rgba({hue}, {alpha:.2f}); color: {ink}' "
        f"title='{count} images ({share:.0%} of the row)'>{count}</td>"
    )


def per_class_view(state: RunState) -> tuple[str, pd.DataFrame | None]:
    if not state.history:
        return "", None
    last = state.history[-1]
    best = (
        f" · best so far: epoch {state.best_epoch} ({state.best_accuracy:.1%})"
        if state.best_epoch
        else ""
    )
    text = (
        f"Epoch {last['epoch']}: accuracy **{last['val_accuracy']:.1%}**, "
        f"macro F1 **{last['val_macro_f1']:.3f}**{best}"
    )
    return text, state.per_class.round(3)


def resumable(run_dir: str) -> bool:
    return bool(run_dir) and (Path(run_dir) / runs.CHECKPOINT / runs.LAST_WEIGHTS).exists()


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
    lines += [f"**Note:** {note}" for note in state.notes]
    if state.weights_note:
        warn = state.weights_note.startswith("RANDOM")
        lines.append(
            f"**Warning — weights:** {state.weights_note}"
            if warn
            else f"Weights: {state.weights_note}"
        )
    if state.freeze_note:
        lines.append(state.freeze_note)
    return "\n\n".join(lines)
