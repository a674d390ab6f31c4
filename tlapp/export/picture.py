"""The confusion matrix as a picture (for the model card), drawn with Pillow.

confusion_png("runs/mine", "confusion_matrix.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from .. import runs


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
