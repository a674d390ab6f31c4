"""A run folder is a timm hub folder: `timm.create_model("local-dir:<run>")` loads the trained
model, its class names and its preprocessing; folders from before (the app's record in
config.json) still load everywhere."""

import json

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

from tlapp import models, runs
from tlapp.config import make_config
from tlapp.data import open_image
from tlapp.models import build_model, load_run
from tlapp.predict import Predictor
from tlapp.train import Job, resume_config

FAST = dict(
    recipe="one-phase", weights="none", img_size=48, batch_size=8, lr=3e-3, runs_root="unused"
)


def train(data, run_dir, **overrides):
    config = make_config(data=str(data), out=str(run_dir), **{**FAST, **overrides})
    state = Job(config).start().wait(timeout=240)
    assert state.status == "done", state.message
    return run_dir


def images(folder, n=6):
    return sorted(folder.rglob("*.png"))[:n]


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_timm_loads_the_run_folder_as_the_app_does(class_folder, tmp_path, name):
    run = train(class_folder, tmp_path / "run", model=name, epochs=1)
    info = runs.read_config(run)
    assert info["arch"] == name and info["status"] == "done"
    hub = json.loads((run / runs.CONFIG).read_text())
    assert hub["architecture"] == name and hub["num_classes"] == 3
    assert hub["label_names"] == info["classes"] == ["blue", "green", "red"]

    model = timm.create_model("local-dir:" + str(run), pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == info["classes"]
    data_cfg = resolve_data_config({}, model=model)
    assert tuple(data_cfg["input_size"]) == (3, 48, 48)

    def plain(v):
        return tuple(v) if isinstance(v, (list, tuple)) else v

    for key in ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation"):
        assert plain(data_cfg[key]) == plain(info["data_config"][key]), key

    predictor = Predictor(run)
    pictures = [open_image(p) for p in images(class_folder)]
    transform = create_transform(**data_cfg)
    batch = torch.stack([transform(p) for p in pictures])
    theirs = torch.stack([predictor.transform(p) for p in pictures])
    assert torch.equal(batch, theirs)  # timm's preprocessing is the app's
    with torch.inference_mode():
        assert torch.allclose(model(batch), predictor.model(batch), atol=1e-5)


def test_an_old_run_folder_still_loads_predicts_resumes_and_seeds(class_folder, tmp_path):
    run = train(class_folder, tmp_path / "run", model="test_resnet", epochs=1)
    new_probs = Predictor(run).probabilities(images(class_folder))
    (run / runs.RECORD).replace(run / runs.CONFIG)  # the layout before timm's config.json
    assert not (run / runs.RECORD).exists()

    model, info = load_run(run)
    assert info["arch"] == "test_resnet" and info["classes"] == ["blue", "green", "red"]
    predictor = Predictor(run)
    assert predictor.top_k(images(class_folder)[0])[0][0] in info["classes"]
    assert predictor.probabilities(images(class_folder)) == pytest.approx(new_probs, abs=1e-6)
    assert resume_config(run).epochs == 1
    assert models.run_classes(run) == info["classes"]
    _, weights = build_model("test_resnet", 3, str(run), classes=info["classes"])
    assert weights.head_kept  # the earlier run's head, as for a new folder
    with pytest.raises(models.ModelError, match="trained 'test_resnet'"):
        build_model("test_efficientnet", 3, str(run))


def test_a_folder_with_only_timm_config_is_not_a_run(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / runs.CONFIG).write_text(json.dumps({"architecture": "test_resnet"}))
    assert models.run_record(folder) is None
    with pytest.raises(runs.RunError, match="not a run folder"):
        runs.read_config(folder)
