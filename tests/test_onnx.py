"""ONNX export: the file matches PyTorch on the run's own images, or it is not kept."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from conftest import write_classes

from tlapp import runs
from tlapp.config import make_config
from tlapp.export import OnnxPredictor, export_onnx
from tlapp.export import onnx as onnx_export
from tlapp.predict import Predictor
from tlapp.train import Job

DIGITS = Path(__file__).resolve().parents[1] / "tlapp" / "sample" / "digits"
VAL = 6  # validation images of the colour runs: 2 of each class's 12
FAST = dict(recipe="one-phase", weights="none", img_size=48, epochs=1, batch_size=8, lr=3e-3)


def train(data, out, **overrides) -> Path:
    config = make_config(data=str(data), out=str(out), **{**FAST, **overrides})
    state = Job(config).start().wait(timeout=240)
    assert state.status == "done", state.message
    return Path(out)


def tlapp(*args):
    return subprocess.run(
        [sys.executable, "-m", "tlapp", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx")
    return train(write_classes(root / "colours"), root / "run", model="test_resnet")


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run, free to change (its validation images are the module's)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_export_passes_the_check_and_carries_the_preprocessing(run):
    report = export_onnx(run)
    info = runs.read_config(run)
    assert report.path == run / "model.onnx" and report.path.is_file()
    assert report.size_bytes == report.path.stat().st_size > 0
    assert report.images_checked == info["dataset"]["images"]["val"] == VAL
    assert report.images_from == "validation images" and report.int8 is None
    assert report.max_diff <= 1e-4 and report.agreement == 1.0
    line = report.describe()
    assert "\n" not in line and f"{VAL} validation images" in line and "100.0%" in line
    model = onnx.load(report.path)
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert set(onnx_export.PREPROCESSING) | {"classes"} <= set(props)
    meta = onnx_export.read_metadata(report.path)
    assert meta["classes"] == info["classes"] == ["blue", "green", "red"]
    for key in onnx_export.PREPROCESSING:
        assert meta[key] == info["data_config"][key]
    assert meta["input_size"] == [3, 48, 48]
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "input" and not isinstance(given.shape[0], int)  # any batch size
    assert session.get_outputs()[0].name == "logits"
    assert not leftovers(run)


def test_onnx_predictor_gives_what_the_pytorch_predictor_gives(run, trained):
    export_onnx(run)
    images = sorted((trained.parent / "colours" / "green").iterdir())[:5]
    onnx_side, torch_side = OnnxPredictor(run), Predictor(run)
    top = onnx_side.top_k(images[0], k=2)
    assert [c for c, _ in top] == [c for c, _ in torch_side.top_k(images[0], k=2)]
    assert all(isinstance(c, str) and isinstance(p, float) for c, p in top)
    np.testing.assert_allclose(
        onnx_side.probabilities(images), torch_side.probabilities(images), atol=1e-4
    )
    a, b = onnx_side.table(images), torch_side.table(images)
    assert (
        list(a.columns) == list(b.columns) and a["prediction"].tolist() == b["prediction"].tolist()
    )
    # the file alone is enough: no run folder needed
    assert OnnxPredictor(run / "model.onnx").top_k(images[0], k=2)[0][0] == top[0][0]


def test_a_mismatched_export_is_refused_and_deleted(run, monkeypatch):
    export_onnx(run)  # an earlier, good export: it no longer matches once the check fails
    real_export = torch.onnx.export

    def export_changed_weights(model, *args, **kwargs):
        changed = copy.deepcopy(model)
        with torch.no_grad():
            head = changed.get_classifier()
            head.weight.add_(torch.randn_like(head.weight))
        return real_export(changed, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_changed_weights)
    with pytest.raises(ValueError, match="does not match the PyTorch model") as err:
        export_onnx(run)
    assert "so it was not kept" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert not (run / "model.onnx").exists() and not leftovers(run)


def test_a_small_drift_in_probabilities_is_refused(run, monkeypatch):
    real_run = ort.InferenceSession.run

    def drifting(self, *args, **kwargs):  # what a wrongly lowered op would do: slightly off
        out = real_run(self, *args, **kwargs)
        return [out[0] + np.float32(0.002) * np.arange(out[0].shape[1], dtype=np.float32)]

    monkeypatch.setattr(ort.InferenceSession, "run", drifting)
    with pytest.raises(ValueError, match="does not match the PyTorch model"):
        export_onnx(run)
    assert not (run / "model.onnx").exists()


def test_without_any_images_the_export_is_refused(class_folder, tmp_path):
    run = train(class_folder, tmp_path / "run", model="test_resnet")
    kept = shutil.copytree(class_folder / "red", tmp_path / "elsewhere")
    shutil.rmtree(class_folder)  # the data has gone: nothing to check with
    with pytest.raises(ValueError, match="could not be checked") as err:
        export_onnx(run)
    assert "no other images were given" in str(err.value)
    assert not (run / "model.onnx").exists() and not leftovers(run)
    out = tlapp("export", run, "--format", "onnx")
    assert out.returncode == 2 and out.stderr.startswith("error: The export was not kept")
    report = export_onnx(run, check_images=[kept])
    assert report.images_from == "given images" and report.images_checked == 12
    assert report.agreement == 1.0 and "12 given images" in report.describe()


def test_the_recorded_data_is_scanned_again_when_the_prediction_list_is_gone(run):
    (run / runs.PREDICTIONS).unlink()
    report = export_onnx(run)
    assert report.images_from == "validation images" and report.images_checked == VAL


def test_int8_is_checked_with_its_own_tolerance(run, monkeypatch):
    report = export_onnx(run, quantize=True)
    int8 = report.int8
    assert int8.path == run / "model.int8.onnx" and int8.path.is_file()
    assert int8.size_bytes < report.size_bytes
    assert int8.images_checked == VAL and int8.agreement >= onnx_export.INT8_AGREEMENT
    assert int8.describe().startswith("int8 ONNX model model.int8.onnx")
    assert OnnxPredictor(run, int8=True).classes == ["blue", "green", "red"]
    monkeypatch.setattr(onnx_export, "INT8_AGREEMENT", 1.01)  # a check it cannot pass
    with pytest.raises(ValueError, match=r"int8 model keeps the top-1 class of only"):
        export_onnx(run, quantize=True)
    assert not int8.path.exists() and (run / "model.onnx").is_file()  # the checked model stays


def test_cli_export_then_predict_with_onnx_runtime(run, trained, tmp_path):
    out = tlapp("export", run, "--format", "onnx")
    assert out.returncode == 0, out.stderr
    line, path = out.stdout.strip().splitlines()
    assert line.startswith("ONNX model model.onnx") and "top-1 agreement 100.0%" in line
    assert Path(path) == run / "model.onnx"
    images = trained.parent / "colours"
    results = {}
    for name, flags in (("onnx", ["--onnx"]), ("torch", [])):
        csv = tmp_path / f"{name}.csv"
        pred = tlapp("predict", run, images / "red", images / "blue", "--csv", csv, *flags)
        assert pred.returncode == 0, pred.stderr
        assert pred.stdout.split()[:4] == ["path", "prediction", "confidence", "error"]
        results[name] = pd.read_csv(csv, keep_default_na=False)
    assert len(results["onnx"]) == 24
    assert results["onnx"]["prediction"].tolist() == results["torch"]["prediction"].tolist()
    probs = [c for c in results["torch"].columns if c.startswith("p(")]
    assert (results["onnx"][probs] - results["torch"][probs]).abs().max().max() <= 1e-4
    missing = tlapp("predict", trained, images / "red", "--onnx")  # never exported
    assert missing.returncode == 2 and "There is no model.onnx" in missing.stderr
    assert "export the run first" in missing.stderr


def test_a_vit_exports_and_passes_the_check(class_folder, tmp_path):
    run = train(class_folder, tmp_path / "run", model="test_vit")
    report = export_onnx(run)
    assert report.agreement == 1.0 and report.max_diff <= 1e-4 and report.images_checked == VAL
    image = class_folder / "blue" / "blue_00.png"
    assert OnnxPredictor(run).top_k(image)[0][0] == Predictor(run).top_k(image)[0][0]


def test_the_sample_digits_export_within_the_target(tmp_path):
    """The issue's target: within 1e-4 in probability, every top-1 the same, on the digits."""
    run = train(DIGITS, tmp_path / "run", model="test_resnet", img_size=32, freeze="all")
    report = export_onnx(run)
    assert report.images_checked == 100  # 20% of 500, held out per class
    assert report.agreement == 1.0 and report.max_diff <= 1e-4
