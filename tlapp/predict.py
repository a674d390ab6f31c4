"""A trained run, ready to classify images.

    predictor = Predictor("runs/20261124-101500-resnet18")
    predictor.top_k("photo.jpg")                 # [("cat", 0.93), ("dog", 0.05), ...]
    predictor.table(paths)                       # a row per image, a probability column per class
    picture, method = predictor.explain("photo.jpg")   # the image with a heat map on it

It uses timm's own evaluation transform with the preprocessing the run recorded (run.json; timm's
config.json holds the same), so it sees images exactly as any timm user loading the folder would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from timm.data import create_transform

from .data import ImageError, open_image
from .explain import heat_map, overlay
from .geometry import eval_geometry
from .models import load_run


def eval_transform(data_config: dict):
    """timm's evaluation transform for the preprocessing a run recorded (its data config)."""
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}
    return create_transform(**cfg, is_training=False)


class Predictor:
    """A trained run folder, ready to classify images."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.model, self.info = load_run(run_dir, device)
        self.device, self.classes = torch.device(device), self.info["classes"]
        self.transform = eval_transform(self.info["data_config"])

    def batch(self, images: list) -> torch.Tensor:
        """The images (paths or PIL images) preprocessed as the model expects, as one NCHW batch."""
        return torch.stack(
            [
                self.transform(open_image(im) if isinstance(im, (str, Path)) else im.convert("RGB"))
                for im in images
            ]
        )

    @torch.inference_mode()
    def probabilities(self, images: list) -> np.ndarray:
        """Class probabilities, one row per image (a path or a PIL image)."""
        return self.model(self.batch(images).to(self.device)).float().softmax(1).cpu().numpy()

    def explain(self, image, class_name: str | None = None) -> tuple[Image.Image, str]:
        """The image with a heat map for `class_name` (default: the top prediction), and the
        method's name (Grad-CAM for CNNs, occlusion for transformers)."""
        picture = open_image(image) if isinstance(image, (str, Path)) else image.convert("RGB")
        pixels = self.transform(picture).to(self.device)
        index = (
            self.classes.index(class_name)
            if class_name
            else int(self.probabilities([picture])[0].argmax())
        )
        heat, method = heat_map(self.model, pixels, index)
        crop = self.display_crop(picture)
        if crop.width < 320:  # small inputs are shown larger, so the map can be read
            crop = crop.resize((320, 320), Image.BICUBIC)
        return overlay(crop, heat), method

    def display_crop(self, picture: Image.Image) -> Image.Image:
        """The part of the picture the model sees (timm's resize and crop for the run's crop
        mode: center, squash or border), for overlays."""
        return eval_geometry(self.info["data_config"]).view(picture)

    def table(self, paths: list, batch_size: int = 32) -> pd.DataFrame:
        """One row per image: the prediction, its confidence and one probability column per
        class (they sum to 1); an unreadable image gets the reason and no probabilities."""
        rows = []
        for start in range(0, len(paths), batch_size):
            opened = []
            for path in paths[start : start + batch_size]:
                try:
                    opened.append((path, open_image(path)))
                except ImageError as err:
                    rows.append(
                        {
                            "path": str(path),
                            "prediction": "",
                            "confidence": np.nan,
                            "error": f"skipped: {err}",
                        }
                    )
            if not opened:
                continue
            for (path, _), probs in zip(opened, self.probabilities([im for _, im in opened])):
                best = int(probs.argmax())
                rows.append(
                    {
                        "path": str(path),
                        "prediction": self.classes[best],
                        "confidence": float(probs[best]),
                        "error": "",
                        **{f"p({c})": float(v) for c, v in zip(self.classes, probs)},
                    }
                )
        order = {str(p): i for i, p in enumerate(paths)}
        table = pd.DataFrame(
            rows,
            columns=[
                "path",
                "prediction",
                "confidence",
                "error",
                *(f"p({c})" for c in self.classes),
            ],
        )
        return table.sort_values("path", key=lambda col: col.map(order)).reset_index(drop=True)

    def top_k(self, image, k: int = 5) -> list[tuple[str, float]]:
        probs = self.probabilities([image])[0]
        order = np.argsort(-probs)[:k]
        return [(self.classes[i], float(probs[i])) for i in order]
