"""Write scikit-learn's handwritten digits as PNG files: tlapp/sample/digits/<digit>/<n>.png.

The bundled sample dataset, shipped in the package (every install has it). Run once from the
repository root (needs scikit-learn):

    python assets/make_digits.py

Each 8x8 scan (16 grey levels) is scaled to 64x64 so that it is visible in the browser;
50 images per digit keep the folder small (about 500 files) and a CPU run short.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

PER_CLASS = 50
SIZE = 64


def main(out: Path = Path(__file__).resolve().parents[1] / "tlapp" / "sample" / "digits") -> None:
    digits = load_digits()
    counts = {d: 0 for d in range(10)}
    for image, label in zip(digits.images, digits.target):
        if counts[label] >= PER_CLASS:
            continue
        counts[label] += 1
        pixels = (255 - image * (255 / 16)).astype(np.uint8)  # dark ink on white paper
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").resize((SIZE, SIZE), Image.BICUBIC).save(
            folder / f"{counts[label]:03d}.png", optimize=True
        )
    print(f"wrote {sum(counts.values())} images in {len(counts)} classes to {out}")


if __name__ == "__main__":
    main()
