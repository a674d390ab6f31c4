"""The backbones the page offers, their sizes, and the error a model choice raises: what the
page shows before torch and timm have loaded (`tlapp.models` re-exports the catalogue and the
error).

    choices = catalog_choices()   # [("resnet18 · 11.7M params · classic CNN…", "resnet18"), ...]
"""

from __future__ import annotations

# Backbones that suit small datasets, light enough for a CPU, each a good default somewhere.
CATALOG = {
    "resnet18": "classic CNN, quick on CPU",
    "mobilenetv4_conv_small": "smallest and fastest, good for CPU and phones",
    "mobilenetv3_large_100": "small and fast, good on CPU",
    "efficientnet_b0": "accurate for its size",
    "resnet50": "the standard baseline, better with a GPU",
    "convnext_tiny": "modern CNN, strong accuracy, best with a GPU",
    "vit_small_patch16_224": "vision transformer, best with a GPU",
}

# Their parameters with the default head, as `models.param_count` counts them: written down so
# that the page lists them without building seven models (tests check them against timm).
PARAMS = {
    "resnet18": 11_689_512,
    "mobilenetv4_conv_small": 3_774_024,
    "mobilenetv3_large_100": 5_483_032,
    "efficientnet_b0": 5_288_548,
    "resnet50": 25_557_032,
    "convnext_tiny": 28_589_128,
    "vit_small_patch16_224": 22_050_664,
}

# Their freezable stages (`freeze.stages`): the freeze slider's range until timm has loaded.
STAGES = {
    "resnet18": 5,
    "mobilenetv4_conv_small": 7,
    "mobilenetv3_large_100": 9,
    "efficientnet_b0": 8,
    "resnet50": 5,
    "convnext_tiny": 6,
    "vit_small_patch16_224": 13,
}


class ModelError(ValueError):
    """The model cannot be built as asked; the message is one sentence meant for the user."""


def catalog_choices() -> list[tuple[str, str]]:
    """(label, name) pairs for a dropdown: 'resnet18 · 11.7M params · classic CNN…'."""
    return [
        (f"{name} · {PARAMS[name] / 1e6:.1f}M params · {hint}", name)
        for name, hint in CATALOG.items()
    ]
