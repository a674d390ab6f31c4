"""Where an image's pixels land in the model's input: timm's evaluation geometry, in one place.

    geometry = eval_geometry(data_config)      # a run's (timm's) data config
    resized = geometry.resize(image)           # PIL, resized as timm resizes before its crop
    view = geometry.crop(pixels)               # uint8 CHW of the resized image -> size x size
    picture = geometry.view(image)             # both, on a PIL image (for overlays)

timm's evaluation transform (`create_transform(..., is_training=False)`) scales the image to
`floor(size / crop_pct)` and keeps the central `size` x `size`, in the way the model's
`crop_mode` says:

- `center`: the shorter side is scaled (aspect kept) and the overflow cropped away;
- `squash`: both sides are scaled (aspect not kept), then cropped;
- `border`: the longer side is scaled (aspect kept), then cropped or padded with the mean colour.

Training decodes images with `resize` and validates on `crop`, the embedding cache holds what
`crop` gives, and the predictor runs timm's own transform and shows `view`: all four agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

CROP_MODES = ("center", "squash", "border")
DEFAULT_CROP_PCT = 0.875  # timm's, when a data config has none
RESAMPLE = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
}


@dataclass(frozen=True)
class EvalGeometry:
    size: int  # the model's input side
    scale: int  # the side timm resizes to before cropping: floor(size / crop_pct)
    mode: str  # center | squash | border
    interpolation: str
    fill: tuple[int, int, int]  # what padding is filled with: the mean colour in border mode

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, rounded as timm's transforms round."""
        if self.mode == "squash":
            return self.scale, self.scale
        if self.mode == "border":  # timm's ResizeKeepRatio(longest=1): rounded
            ratio = max(height / self.scale, width / self.scale)
            return round(width / ratio), round(height / ratio)
        # torchvision's Resize(int): the shorter side to `scale`, the longer one truncated
        if width <= height:
            return self.scale, int(self.scale * height / width)
        return int(self.scale * width / height), self.scale

    def resize(self, image: Image.Image) -> Image.Image:
        size = self.resized_size(*image.size)
        if size == image.size:
            return image
        return image.resize(size, RESAMPLE.get(self.interpolation, Image.BICUBIC))

    def crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """The central size x size of a resized image [C, H, W], padded with `fill` where the
        image is smaller (torchvision's CenterCrop and timm's CenterCropOrPad, same offsets)."""
        _, h, w = pixels.shape
        s = self.size
        if h < s or w < s:
            canvas = torch.tensor(self.fill, dtype=pixels.dtype).view(-1, 1, 1)
            canvas = canvas.repeat(1, max(h, s), max(w, s))
            top, left = (max(h, s) - h) // 2, (max(w, s) - w) // 2
            canvas[:, top : top + h, left : left + w] = pixels
            pixels, h, w = canvas, canvas.shape[1], canvas.shape[2]
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        return pixels[:, top : top + s, left : left + s]

    def view(self, image: Image.Image) -> Image.Image:
        """What the model sees of a picture, as a picture (before normalisation)."""
        pixels = torch.from_numpy(np.array(self.resize(image.convert("RGB")))).permute(2, 0, 1)
        return Image.fromarray(self.crop(pixels).permute(1, 2, 0).numpy())


def eval_geometry(data_config: dict, img_size: int | None = None) -> EvalGeometry:
    """The evaluation geometry of a timm data config (input_size, crop_pct, crop_mode,
    interpolation, mean), at `img_size` if given. Unknown crop modes are centre crops, as in
    timm."""
    size = int(img_size or data_config["input_size"][-1])
    crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
    mode = data_config.get("crop_mode") or "center"
    mode = mode if mode in CROP_MODES else "center"
    mean = data_config.get("mean") or (0.0, 0.0, 0.0)
    fill = tuple(round(255 * v) for v in mean) if mode == "border" else (0, 0, 0)
    return EvalGeometry(
        size=size,
        scale=math.floor(size / crop_pct),
        mode=mode,
        interpolation=data_config.get("interpolation") or "bilinear",
        fill=fill,
    )
