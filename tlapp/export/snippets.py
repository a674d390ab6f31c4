"""The code that loads a run's model, shown on the page and in the model card.

    print(usage_snippet("runs/mine"))                     # timm code that loads the local run
    print(usage_snippet("runs/mine", "me/flowers"))       # the same from the hub repository
    print(onnx_snippet("runs/mine"))                      # with ONNX Runtime; "" until exported

Each snippet classifies one image, PHOTO, and prints its class: a user replaces the file name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .onnx import ONNX_FILE

PHOTO = "photo.jpg"  # the image the snippets classify


TIMM_SNIPPET = """\
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

model = timm.create_model({source}, pretrained=True).eval()
transform = create_transform(**resolve_data_config(model=model))
image = transform(Image.open("{photo}").convert("RGB")).unsqueeze(0)
with torch.inference_mode():
    probabilities = model(image).softmax(dim=-1)[0]
label = model.pretrained_cfg["label_names"][int(probabilities.argmax())]
print(label, f"{{float(probabilities.max()):.1%}}")
"""


ONNX_SNIPPET = """\
import json

import onnxruntime as ort
from PIL import Image
from timm.data import create_transform
{download}
session = ort.InferenceSession({path}, providers=["CPUExecutionProvider"])
meta = {{k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}}
keys = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")
transform = create_transform(**{{k: meta[k] for k in keys if k in meta}})
pixels = transform(Image.open("{photo}").convert("RGB")).unsqueeze(0).numpy()
onnx_label = meta["classes"][int(session.run(None, {{"input": pixels}})[0][0].argmax())]
print(onnx_label)
"""


def usage_snippet(run_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """Python that loads the model with timm and classifies one image: from the hub repository
    `repo_id`, or from the run folder itself (`local-dir:`) when there is none."""
    source = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{_posix(run_dir)}"
    return TIMM_SNIPPET.format(source=json.dumps(source), photo=PHOTO)


def onnx_snippet(run_dir: str | os.PathLike, repo_id: str | None = None) -> str:
    """The same with ONNX Runtime and the run's model.onnx; empty when it has none."""
    if not (Path(run_dir) / ONNX_FILE).is_file():
        return ""
    if repo_id:
        download = (
            "from huggingface_hub import hf_hub_download\n\n"
            f"path = hf_hub_download({json.dumps(repo_id)}, {json.dumps(ONNX_FILE)})"
        )
        path = "path"
    else:
        download, path = "", json.dumps(f"{_posix(run_dir)}/{ONNX_FILE}")
    return ONNX_SNIPPET.format(download=download + "\n" if download else "", path=path, photo=PHOTO)


def _posix(run_dir: str | os.PathLike) -> str:
    return Path(run_dir).resolve().as_posix()
