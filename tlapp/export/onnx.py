"""A run's model as ONNX, checked against PyTorch before it is kept.

    report = export_onnx("runs/20261124-101500-resnet18")          # writes model.onnx
    report.describe()    # 'ONNX model model.onnx (46.8 MB) checked against PyTorch on 120 ...'
    report = export_onnx(run, quantize=True)                       # also model.int8.onnx
    OnnxPredictor(run).top_k("photo.jpg")                          # as Predictor, on ONNX Runtime

The file takes a float NCHW batch (any batch size) already preprocessed as the model expects and
returns logits. The preprocessing (input size, mean, std, crop_pct, crop_mode, interpolation) and
the class names travel in the file's metadata_props, each as JSON, so timm's evaluation transform
can be rebuilt from the file alone.

The check: the run's validation images (or, when the data is gone, images the caller gives) go
through PyTorch and ONNX Runtime as the same tensors. The export is kept only if no softmax
probability differs by more than 1e-4 and every top-1 class agrees; the int8 model (dynamic
quantization) must agree on at least 98% of the images. An export that fails is deleted.

It uses torch's TorchScript-based exporter (`dynamo=False`): it converts timm's CNNs and ViTs
without extra packages (the dynamo exporter needs onnxscript) and in a fraction of the time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import runs
from ..data import DataError, ImageError, image_files, open_image
from ..predict import Predictor, eval_transform

ONNX_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
INPUT, OUTPUT = "input", "logits"
OPSET = 17
TOLERANCE = 1e-4  # largest difference in any softmax probability, ONNX against PyTorch
INT8_AGREEMENT = 0.98  # share of images whose top-1 class the int8 model must keep
PREPROCESSING = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")
METADATA = ("classes", "arch", *PREPROCESSING)  # metadata_props keys, each value JSON
MAX_IMAGES = 1000  # the check uses at most this many images, spread over the validation split


@dataclass(frozen=True)
class ExportReport:
    """What was written and how well it agrees with the PyTorch model."""

    path: Path
    size_bytes: int
    images_checked: int
    max_diff: float  # largest absolute difference in a softmax probability
    agreement: float  # share of images with the same top-1 class
    images_from: str = "validation images"
    int8: ExportReport | None = None  # the quantized model, when one was asked for

    def describe(self) -> str:
        kind = "int8 ONNX" if self.path.name.endswith(".int8.onnx") else "ONNX"
        count = f"{self.images_checked} {self.images_from}"
        if self.images_checked == 1:
            count = f"1 {self.images_from.replace('images', 'image')}"
        return (
            f"{kind} model {self.path.name} ({self.size_bytes / 1e6:.1f} MB) checked against "
            f"PyTorch on {count}: top-1 agreement {self.agreement:.1%}, largest probability "
            f"difference {self.max_diff:.1e}."
        )


def export_onnx(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    check_images: list | None = None,
    quantize: bool = False,
    max_images: int = MAX_IMAGES,
) -> ExportReport:
    """Write the run's model as ONNX (`model.onnx` in the run folder, or `dest`), check it
    against PyTorch and return the report; raises ValueError, leaving no file, if it differs.

    `check_images` (image files or folders) are used when the run's validation images are no
    longer where the run found them; with no images at all the export is refused, unchecked.
    `quantize` also writes `model.int8.onnx` beside it, checked with a looser tolerance."""
    predictor = Predictor(run_dir)
    dest = Path(dest) if dest else Path(run_dir) / ONNX_FILE
    if dest.is_dir():
        dest = dest / ONNX_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        paths, source = _images_to_check(run_dir, predictor.info, check_images, max_images, stack)
        batches = _preprocess(predictor, paths)
        reference = [_softmax(_torch_logits(predictor.model, batch)) for batch in batches]
        checked = {}

        def write(tmp: str) -> None:
            _export(predictor.model, predictor.info, tmp)
            checked.update(_compare(tmp, batches, reference))
            if checked["max_diff"] > TOLERANCE or checked["agreement"] < 1:
                raise ValueError(
                    f"The ONNX model does not match the PyTorch model (top-1 agreement "
                    f"{checked['agreement']:.1%}, largest probability difference "
                    f"{checked['max_diff']:.1e}, allowed {TOLERANCE:.0e}), so it was not kept."
                )

        _write_or_remove(dest, write)
        report = ExportReport(dest, dest.stat().st_size, images_from=source, **checked)
        if quantize:
            report = _with_int8(report, batches, reference)
    return report


def _with_int8(report: ExportReport, batches: list, reference: list) -> ExportReport:
    """Quantize the checked model's weights to int8 (ONNX Runtime's dynamic quantization) and
    check it the same way, with the looser int8 tolerance."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dest = report.path.with_name(report.path.name.removesuffix(".onnx") + ".int8.onnx")
    checked = {}

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".quantize-") as work:
            prepared = Path(work) / "prepared.onnx"
            quant_pre_process(str(report.path), str(prepared))
            quantize_dynamic(str(prepared), tmp, per_channel=True, weight_type=QuantType.QInt8)
        checked.update(_compare(tmp, batches, reference))
        if checked["agreement"] < INT8_AGREEMENT:
            raise ValueError(
                f"The int8 model keeps the top-1 class of only {checked['agreement']:.1%} of "
                f"the images (at least {INT8_AGREEMENT:.0%} is needed; largest probability "
                f"difference {checked['max_diff']:.1e}), so it was not kept; "
                f"the checked full-precision model is in {report.path}."
            )

    _write_or_remove(dest, write)
    int8 = ExportReport(dest, dest.stat().st_size, images_from=report.images_from, **checked)
    return replace(report, int8=int8)


def _write_or_remove(dest: Path, write) -> None:
    """Write through a temporary file; if writing or the check fails, no file is left at
    `dest`, not even an earlier export (it would no longer match the run)."""
    try:
        with _quiet():
            runs.atomic_write(dest, write)
    except Exception:
        dest.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _quiet():
    """The exporter's and the quantizer's advice (deprecation, tracing, pre-processing) is
    for library authors, not for the user; the check is what tells whether the file is good."""
    root, silent = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.setLevel(logging.ERROR)
    root.addHandler(silent)  # and logging.warning() does not install a stderr handler for good
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(silent)
        root.setLevel(level)


def _export(model: torch.nn.Module, info: dict, path: str) -> None:
    import onnx

    channels, height, width = info["data_config"]["input_size"]
    example = torch.zeros(2, channels, height, width)
    try:
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    except Exception as err:
        raise runs.RunError(
            f"The model '{info['arch']}' could not be converted to ONNX ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'})."
        ) from err
    proto = onnx.load(path)
    metadata = {
        "classes": list(info["classes"]),
        "arch": info["arch"],
        **{k: info["data_config"][k] for k in PREPROCESSING if k in info["data_config"]},
    }
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in metadata.items()})
    proto.doc_string = (
        f"{info['arch']} trained with tlapp: input '{INPUT}' is a float NCHW batch preprocessed "
        f"as the metadata says, output '{OUTPUT}' one row of logits per image."
    )
    onnx.save(proto, path)


def _images_to_check(
    run_dir, info: dict, given: list | None, limit: int, stack: contextlib.ExitStack
) -> tuple[list[Path], str]:
    """The run's validation images where they still are, else the images given."""
    paths = _validation_images(Path(run_dir), info, stack)
    source = "validation images"
    if not paths and given:
        paths, source = image_files(given), "given images"
    if not paths:
        raise ValueError(
            "The export was not kept because it could not be checked: the run's validation "
            "images are no longer available and no other images were given (pass some to "
            "check it with)."
        )
    if len(paths) > limit:  # evenly spread, the same every time
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths, source


def _validation_images(run_dir: Path, info: dict, stack: contextlib.ExitStack) -> list[Path]:
    """The images the run was validated on: as listed in val_predictions.csv, or the recorded
    data scanned again with the same split."""
    import pandas as pd

    listed = run_dir / runs.PREDICTIONS
    if listed.is_file():
        with contextlib.suppress(Exception):
            paths = [Path(p) for p in pd.read_csv(listed)["path"]]
            paths = [p for p in paths if p.is_file()]
            if paths:
                return paths
    try:
        dataset = runs.recorded_dataset(info.get("config", {}), stack)
    except (DataError, OSError):
        return []
    return [Path(p) for p in dataset.split("val")["path"]]


def _preprocess(predictor: Predictor, paths: list[Path], batch_size: int = 32) -> list:
    """The images as the model's input tensors, in batches; unreadable files are left out."""
    images = []
    for path in paths:
        with contextlib.suppress(ImageError, OSError):
            images.append(open_image(path))
    if not images:
        raise ValueError(
            "The export was not kept because it could not be checked: none of the "
            f"{len(paths)} images to check it with could be read."
        )
    return [predictor.batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]


@torch.inference_mode()
def _torch_logits(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    return model(batch).float().numpy()


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.asarray(logits, dtype=np.float32)).softmax(1).numpy()


def _session(path: str | os.PathLike):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _compare(path: str, batches: list, reference: list) -> dict:
    """ONNX Runtime's probabilities against PyTorch's for the same input tensors."""
    session = _session(path)
    onnx_probs = np.concatenate(
        [_softmax(session.run([OUTPUT], {INPUT: batch.numpy()})[0]) for batch in batches]
    )
    torch_probs = np.concatenate(reference)
    return {
        "images_checked": len(torch_probs),
        "max_diff": float(np.abs(onnx_probs - torch_probs).max()),
        "agreement": float((onnx_probs.argmax(1) == torch_probs.argmax(1)).mean()),
    }


def read_metadata(path: str | os.PathLike) -> dict:
    """The class names and preprocessing stored in an exported file's metadata_props."""
    meta = _session(path).get_modelmeta().custom_metadata_map
    return {k: json.loads(v) for k, v in meta.items() if k in METADATA}


class OnnxPredictor(Predictor):
    """An exported model on ONNX Runtime, with Predictor's `probabilities`, `top_k` and `table`.

    `source` is a run folder (its model.onnx, or model.int8.onnx with `int8=True`) or an .onnx
    file; the preprocessing comes from the file's metadata, the same timm transform Predictor
    builds from the run."""

    def __init__(self, source: str | os.PathLike, int8: bool = False):
        path = Path(source)
        if path.suffix.lower() != ".onnx":  # a run folder
            path = path / (INT8_FILE if int8 else ONNX_FILE)
        if not path.is_file():
            raise runs.RunError(
                f"There is no {path.name} in '{source}': export the run first "
                f"(tlapp export RUN --format onnx{' --int8' if int8 else ''})."
            )
        self.path, self.session = path, _session(path)
        meta = read_metadata(path)
        if "classes" not in meta or "input_size" not in meta:
            raise runs.RunError(f"'{path.name}' was not exported by tlapp: it has no metadata.")
        self.classes = meta["classes"]
        self.info = {
            "arch": meta.get("arch", ""),
            "classes": self.classes,
            "data_config": {k: meta[k] for k in PREPROCESSING if k in meta},
        }
        self.device = torch.device("cpu")
        self.transform = eval_transform(self.info["data_config"])

    def probabilities(self, images: list) -> np.ndarray:
        logits = self.session.run([OUTPUT], {INPUT: self.batch(images).numpy()})[0]
        return _softmax(logits)

    def explain(self, image, class_name: str | None = None):
        raise runs.RunError("Heat maps need the PyTorch model: use the run folder's Predictor.")
