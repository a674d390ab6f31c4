"""Why did the model say that? A heat map of the pixels behind a prediction.

    heat, method = heat_map(model, pixels, class_index)   # [h, w] in 0..1
    picture = overlay(image, heat)                        # the image with the map blended on

CNNs get Grad-CAM (Selvaraju et al. 2017): the last feature map (`forward_features`, shaped
[B, C, H, W]) weighted by how much each channel raises the class's score. Models that keep
channels last (timm's `output_fmt == "NHWC"`: Swin, MambaOut and the like) return [B, H, W, C];
their maps are turned to [B, C, H, W] first, so the heat map is always spatial. Models whose
features are tokens (vision transformers) get occlusion sensitivity instead: how much the class's
probability drops when each cell of a grid is greyed out. It needs only forward passes, so it
works for any architecture; Grad-CAM on a transformer's tokens proved unreliable (the head reads
one class token), and occlusion showed the same patches as Grad-CAM on the CNNs we tried.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def heat_map(
    model: torch.nn.Module, pixels: torch.Tensor, class_index: int
) -> tuple[np.ndarray, str]:
    """([h, w] map normalised to 0..1, the method's name) for one normalised image [3, H, W]."""
    model.eval()
    with torch.inference_mode():
        is_cnn = model.forward_features(pixels[None]).dim() == 4
    heat = grad_cam(model, pixels, class_index) if is_cnn else occlusion(model, pixels, class_index)
    top = heat.max()
    return (heat / top if top > 0 else heat), ("Grad-CAM" if is_cnn else "occlusion")


def grad_cam(model: torch.nn.Module, pixels: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM on the last feature map, channels first or last; [h, w] at its resolution."""
    x = pixels[None].clone().requires_grad_(True)  # gradients flow even when every layer is frozen
    with torch.enable_grad():
        features = model.forward_features(x)
        features.retain_grad()
        score = model.forward_head(features)[0, class_index]
        model.zero_grad(set_to_none=True)
        score.backward()
    grads, maps = features.grad[0], features.detach()[0]
    if channel_order(model, features) == "NHWC":
        grads, maps = grads.permute(2, 0, 1), maps.permute(2, 0, 1)
    weights = grads.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * maps).sum(0))
    return cam.float().cpu().numpy()


def channel_order(model: torch.nn.Module, features: torch.Tensor) -> str:
    """'NCHW' or 'NHWC' for a 4-d feature map. timm says which (`model.output_fmt`, a string or
    a `timm.layers.Format`); a model that does not is taken as channels-last when only the last
    dimension has its feature count."""
    fmt = getattr(model, "output_fmt", None)
    fmt = str(getattr(fmt, "value", fmt) or "")
    if fmt in ("NCHW", "NHWC"):
        return fmt
    channels = getattr(model, "num_features", None)
    last_only = features.shape[-1] == channels and features.shape[1] != channels
    return "NHWC" if channels and last_only else "NCHW"


@torch.inference_mode()
def occlusion(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    class_index: int,
    grid: int = 8,
    batch_size: int = 16,
) -> np.ndarray:
    """How much the class's probability drops when each cell of a grid x grid is greyed out."""
    _, h, w = pixels.shape
    base = model(pixels[None]).softmax(1)[0, class_index]
    ys, xs = np.linspace(0, h, grid + 1).astype(int), np.linspace(0, w, grid + 1).astype(int)
    masked = []
    for i in range(grid):
        for j in range(grid):
            x = pixels.clone()
            x[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = 0  # 0 is the dataset mean once normalised
            masked.append(x)
    drops = [
        base - model(torch.stack(masked[k : k + batch_size])).softmax(1)[:, class_index]
        for k in range(0, len(masked), batch_size)
    ]
    return torch.cat(drops).clamp(min=0).reshape(grid, grid).float().cpu().numpy()


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a heat map (0..1, any size) over an image: blue is cold, red is hot."""
    image = image.convert("RGB")
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(
        image.size, Image.BILINEAR
    )
    h = np.asarray(heat_img, dtype=np.float32) / 255
    colour = (
        np.stack(
            [
                np.clip(1.5 * h - 0.2, 0, 1),
                np.clip(1.5 - np.abs(2 * h - 1) * 1.5, 0, 1),
                np.clip(1.2 - 1.5 * h, 0, 1),
            ],
            axis=-1,
        )
        * 255
    )
    mixed = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colour
    return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))
