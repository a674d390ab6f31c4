"""What lets a model leave the app in the formats people use.

| module | what it holds |
|---|---|
| `onnx` | `export_onnx`: model.onnx (and int8), kept only if ONNX Runtime matches PyTorch; `OnnxPredictor` |
| `card` | the model card (`model_card`): the hub repository's README.md |
| `snippets` | the timm and ONNX Runtime code that loads a run (`usage_snippet`, `onnx_snippet`) |
| `public` | the published record (`public_record`): run.json with local paths cut |
| `picture` | the confusion matrix drawn for the card |
| `hub` | `push_to_hub`: the run folder, its card and picture, to a Hugging Face repository |

timm's own hub layout (config.json beside model.safetensors) is written with every run, by
`tlapp.runs`, so a run folder loads with `timm.create_model("local-dir:...", pretrained=True)`.
"""

from .card import model_card
from .hub import push_to_hub
from .onnx import ExportReport, OnnxPredictor, export_onnx
from .snippets import onnx_snippet, usage_snippet

__all__ = [
    "ExportReport",
    "OnnxPredictor",
    "export_onnx",
    "model_card",
    "onnx_snippet",
    "push_to_hub",
    "usage_snippet",
]
