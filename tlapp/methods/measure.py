"""Teacher, student and int8 student side by side: file size, CPU latency, validation accuracy.

    table, note = compare(teacher_dir, student_dir, dataset, timed_runs=50)   # distill's table
    accuracy(predictor, paths, targets)      # top-1 of a Predictor or an OnnxPredictor
    latency_ms(predictor, "photo.jpg")       # median ms of one forward pass at batch 1

Each model is measured through its own predictor (timm's evaluation transform) on the validation
split.

Quantisation: dynamic int8 through ONNX Runtime's `quantize_dynamic` (`export_onnx(run,
quantize=True)`, which keeps it only if at least 98% of the validation images keep their top-1
class; otherwise the table says it was refused, and why). This is the one that serves CNNs:
ONNX Runtime quantises the weights of convolutions as well as of linear layers, so a CNN's file
shrinks about four times (`bench/methods.py` reports the sizes), whereas
`torch.ao.quantization.quantize_dynamic` quantises only `nn.Linear` (and recurrent) layers, which
in a CNN is the classifier alone. Dynamic int8 convolutions (ConvInteger) save size, not
necessarily time: on a CPU they can run slower than the float ONNX file, so the int8 row's note
gives the float ONNX latency beside it. Teacher and student latencies are PyTorch's (fp32, eval
mode), the int8 row's ONNX Runtime's, each at batch 1 with the thread count torch is set to: the
median of `timed_runs` calls after a warm-up, preprocessing excluded.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import runs
from ..data import Dataset
from ..predict import Predictor


def compare(
    teacher_dir: Path, student_dir: Path, dataset: Dataset, timed_runs: int = 50
) -> tuple[pd.DataFrame, str]:
    """The three rows: file size, CPU latency at batch 1 and validation accuracy, each model
    through its own predictor (timm's evaluation transform) on the validation split."""
    from ..export.onnx import INT8_FILE, OnnxPredictor, export_onnx

    val = dataset.split("val")
    paths, targets = val["path"].tolist(), dataset.targets("val")
    rows = []
    for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
        predictor = Predictor(folder)
        rows.append(
            {
                "model": name,
                "architecture": predictor.info["arch"],
                "file": runs.WEIGHTS,
                "size (MB)": (folder / runs.WEIGHTS).stat().st_size / 1e6,
                "CPU latency (ms)": latency_ms(predictor, paths[0], timed_runs),
                "val accuracy": accuracy(predictor, paths, targets),
                "note": "PyTorch, fp32",
            }
        )
    int8 = {"model": "student int8", "architecture": rows[1]["architecture"], "file": INT8_FILE}
    try:
        exported = export_onnx(student_dir, quantize=True)
    except (ValueError, runs.RunError) as err:  # RunError is a ValueError too
        rows.append({**int8, "note": f"refused: {err}"})
        note = f"The int8 model was refused: {err}"
    else:
        predictor = OnnxPredictor(student_dir, int8=True)
        float_ms = latency_ms(OnnxPredictor(student_dir), paths[0], timed_runs)
        rows.append(
            {
                **int8,
                "size (MB)": exported.int8.size_bytes / 1e6,
                "CPU latency (ms)": latency_ms(predictor, paths[0], timed_runs),
                "val accuracy": accuracy(predictor, paths, targets),
                "note": f"ONNX Runtime, dynamic int8: top-1 agreement with the student "
                f"{exported.int8.agreement:.1%}; the float {exported.path.name} takes "
                f"{float_ms:.2f} ms there",
            }
        )
        note = f"ONNX files: {exported.path.name}, {exported.int8.path.name}."
    table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "architecture",
            "file",
            "size (MB)",
            "CPU latency (ms)",
            "val accuracy",
            "note",
        ],
    )
    return table, note


def accuracy(predictor, paths: list[str], targets: np.ndarray, batch: int = 32) -> float:
    """Top-1 accuracy of a Predictor (or OnnxPredictor) on labelled image files."""
    if not paths:
        return math.nan
    predicted = np.concatenate(
        [
            predictor.probabilities(paths[i : i + batch]).argmax(1)
            for i in range(0, len(paths), batch)
        ]
    )
    return float((predicted == np.asarray(targets)).mean())


def latency_ms(predictor, image: str, timed_runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of one image's forward pass (batch 1, preprocessing excluded), with
    torch's thread count (ONNX Runtime is given the same)."""
    x = predictor.batch([image])
    session = getattr(predictor, "session", None)
    if session is not None:
        import onnxruntime as ort

        from ..export.onnx import INPUT, OUTPUT

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            str(predictor.path), options, providers=["CPUExecutionProvider"]
        )
        feed = {INPUT: x.numpy()}
        run = lambda: session.run([OUTPUT], feed)  # noqa: E731
    else:
        model = predictor.model

        def run():
            with torch.inference_mode():
                model(x)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, timed_runs)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
