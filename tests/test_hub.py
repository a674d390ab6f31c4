"""Publishing to the Hugging Face Hub: the model card, the usage code, and the upload (with the
hub's HTTP calls replaced, so that nothing leaves the machine)."""

import json
import shutil
import socket
import sys
from pathlib import Path

import huggingface_hub
import pytest
from conftest import poll_until, serve, start_training, write_classes, zip_folder
from gradio_client import Client, handle_file
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoUrl
from PIL import Image

from tlapp import runs
from tlapp.config import make_config
from tlapp.data import DataError
from tlapp.export import card as cards
from tlapp.export import export_onnx, hub
from tlapp.predict import Predictor
from tlapp.train import Job
from tlapp.train.state import RunState
from tlapp.web import AppSettings
from tlapp.web.page import use
from tlapp.web.sessions import Session

FAST = dict(
    model="test_resnet",
    recipe="one-phase",
    weights="none",
    img_size=48,
    epochs=1,
    batch_size=8,
    lr=3e-3,
)
REPO = "someone/colours"
TOKEN = "hf_" + "tlappTestTokenNeverSent" * 2
EXPECTED = [
    "README.md",
    "config.json",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "metrics.csv",
    "model.safetensors",
    "per_class.csv",
    "run.json",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    data = write_classes(root / "colours")
    config = make_config(data=str(data), out=str(root / "run"), **FAST)
    state = Job(config).start().wait(timeout=240)
    assert state.status == "done", state.message
    return root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run, free to change (its validation images are the module's)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def one_image_per_class(trained: Path) -> list[Path]:
    data = Path(runs.read_config(trained)["config"]["data"])
    return [sorted((data / c).iterdir())[0] for c in runs.read_config(trained)["classes"]]


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi.create_repo and upload_folder record what they are given and keep a copy of the
    folder; no request is made."""
    calls = {"uploaded": tmp_path / "uploaded"}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = {"repo_id": repo_id, "token": self.token, **kwargs}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls["upload"] = {"token": self.token, **kwargs}
        shutil.copytree(kwargs["folder_path"], calls["uploaded"])

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def uploaded_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_card_is_valid_and_says_what_the_model_does(run):
    text = cards.model_card(run, repo_id=REPO)
    card = ModelCard(text)
    info = runs.read_config(run)
    meta = card.data.to_dict()
    assert card.data.library_name == "timm"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.tags == ["image-classification", "timm", "tlapp"]
    assert "license" not in meta and "base_model" not in meta  # random weights: nothing known
    scores = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert scores[("validation", "accuracy")] == pytest.approx(info["best_val_accuracy"], abs=1e-4)
    (best,) = [r for r in runs.read_metrics(run) if r["epoch"] == info["best_epoch"]]
    assert scores[("validation", "f1")] == pytest.approx(best["val_macro_f1"], abs=1e-4)
    test = info["test"]  # the share held back by default, scored once at the end
    assert scores[("test", "accuracy")] == pytest.approx(test["accuracy"], abs=1e-4)
    low, high = (f"{test[k]:.1%}" for k in ("accuracy_low", "accuracy_high"))
    assert f"On the {test['images']} test images" in card.text
    assert f"95% interval: {low} to {high}" in card.text
    assert card.text.index("test images") < card.text.index("validation images")  # test first
    for name in info["classes"]:
        assert f"| {name} |" in card.text  # in the per-class table
    assert f"**{info['best_val_accuracy']:.1%}**" in card.text
    assert "](confusion_matrix.png)" in card.text
    assert f'timm.create_model("hf-hub:{REPO}", pretrained=True)' in card.text
    assert "ONNX Runtime" not in card.text  # not exported yet
    for line in info["recipe"]:
        assert line in card.text
    assert "medical" in card.text and "Intended use and limitations" in card.text
    assert str(run) not in card.text and info["config"]["data"] not in card.text


def test_the_card_names_the_base_model_its_licence_and_the_test_score(run):
    info = runs.read_config(run)
    info.update(
        pretrained=True,
        weights_used="pretrained (timm/resnet18.a1_in1k, from the local cache)",
        test={"images": 9, "accuracy": 0.8889, "macro_f1": 0.875, "epoch": 1},
    )
    runs.write_config(run, info)
    config = json.loads((run / "config.json").read_text())
    config["pretrained_cfg"]["license"] = "apache-2.0"
    (run / "config.json").write_text(json.dumps(config))
    export_onnx(run)
    card = ModelCard(cards.model_card(run, repo_id=REPO))
    assert card.data.base_model == "timm/resnet18.a1_in1k"
    assert card.data.license == "apache-2.0"
    scores = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert scores[("test", "accuracy")] == pytest.approx(0.8889)
    assert scores[("test", "f1")] == pytest.approx(0.875)
    assert "On the 9 test images" in card.text and "**88.9%**" in card.text
    assert "95% interval" not in card.text  # recorded before intervals: none is made up
    assert f'hf_hub_download("{REPO}", "model.onnx")' in card.text


@pytest.mark.parametrize("from_hub", [True, False])
def test_the_snippet_classifies_as_the_predictor_does(run, trained, from_hub):
    code = cards.usage_snippet(run, REPO if from_hub else None)
    local = f"local-dir:{run.resolve().as_posix()}"
    if from_hub:
        code = code.replace(f"hf-hub:{REPO}", local)
    assert local in code and cards.PHOTO in code
    predictor = Predictor(run)
    for image in one_image_per_class(trained):
        namespace = {}
        exec(compile(code.replace(cards.PHOTO, str(image)), "snippet", "exec"), namespace)
        assert namespace["label"] == predictor.top_k(image, 1)[0][0]


def test_the_onnx_snippet_classifies_as_the_predictor_does(run, trained):
    assert cards.onnx_snippet(run) == ""  # nothing exported yet
    export_onnx(run)
    code = cards.onnx_snippet(run)
    assert "onnxruntime" in code and f"{run.resolve().as_posix()}/model.onnx" in code
    predictor = Predictor(run)
    for image in one_image_per_class(trained):
        namespace = {}
        exec(compile(code.replace(cards.PHOTO, str(image)), "onnx snippet", "exec"), namespace)
        assert namespace["onnx_label"] == predictor.top_k(image, 1)[0][0]


def test_push_uploads_the_model_and_its_card_but_not_the_users_paths(run, fake_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    export_onnx(run)
    url = hub.push_to_hub(run, REPO, token=TOKEN)
    assert url == f"https://huggingface.co/{REPO}"
    create, upload = fake_hub["create"], fake_hub["upload"]
    assert create["repo_id"] == REPO and create["private"] is True and create["exist_ok"] is True
    assert create["token"] == upload["token"] == TOKEN
    assert upload["repo_id"] == REPO and not upload.get("delete_patterns")
    folder = fake_hub["uploaded"]
    assert uploaded_files(folder) == sorted([*EXPECTED, "model.onnx"])
    # the resume checkpoint and the list of the user's image paths exist, and stayed home
    assert (run / "checkpoint").is_dir() and (run / "val_predictions.csv").is_file()
    for path in folder.rglob("*"):
        assert TOKEN.encode() not in path.read_bytes(), path.name
    info = runs.read_config(run)
    record = (folder / "run.json").read_text()
    assert info["config"]["data"] not in record and str(run) not in record
    assert info["config"]["out"] not in record
    assert json.loads(record)["classes"] == info["classes"]
    assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    card = ModelCard((folder / "README.md").read_text())
    assert card.data.library_name == "timm" and f"hf-hub:{REPO}" in card.text
    with Image.open(folder / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and min(picture.size) > 100


def test_push_public_and_without_onnx_removes_an_earlier_onnx(run, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the environment's token, when none is given
    hub.push_to_hub(run, REPO, private=False)
    assert fake_hub["create"]["private"] is False
    assert fake_hub["create"]["token"] == TOKEN
    assert fake_hub["upload"]["delete_patterns"] == ["model.onnx"]  # stale, from an older push
    assert uploaded_files(fake_hub["uploaded"]) == EXPECTED


def test_no_token_is_a_clear_sentence(run, fake_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match=r"^No Hugging Face token: .*HF_TOKEN.*\.$"):
        hub.push_to_hub(run, REPO)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(ValueError, match=r"^No Hugging Face token"):
        hub.push_to_hub(run, REPO, stored_token=False)  # a public page asks for one
    assert "create" not in fake_hub


def transport_error():
    """The connection error of the HTTP library huggingface_hub uses (httpx, httpx2, ...)."""
    module = sys.modules[huggingface_hub.errors.HTTPError.__module__.split(".")[0]]
    return module.ConnectError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize(
    "error",
    [transport_error, lambda: socket.gaierror(-3, "Temporary failure in name resolution")],
)
def test_an_unreachable_hub_is_a_clear_sentence(run, monkeypatch, error):
    def create_repo(self, repo_id, **kwargs):
        raise error()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    with pytest.raises(ValueError, match=r"^The Hugging Face Hub could not be reached: .*\.$"):
        hub.push_to_hub(run, REPO, token=TOKEN)


def test_offline_mode_and_a_refused_token_are_clear_sentences(run, monkeypatch):
    # conftest sets HF_HUB_OFFLINE=1: huggingface_hub itself refuses to send anything
    with pytest.raises(ValueError, match=r"^The Hugging Face Hub is switched off here"):
        hub.push_to_hub(run, REPO, token=TOKEN)
    module = sys.modules[huggingface_hub.errors.HTTPError.__module__.split(".")[0]]
    request = module.Request("POST", "https://huggingface.co/api/repos/create")
    response = module.Response(401, request=request)

    def create_repo(self, repo_id, **kwargs):
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    with pytest.raises(ValueError, match=r"^The Hugging Face Hub refused the token: ") as err:
        hub.push_to_hub(run, REPO, token=TOKEN)
    assert TOKEN not in str(err.value)


def test_nothing_to_push_and_a_bad_name_are_refused(run, fake_hub, tmp_path):
    with pytest.raises(ValueError, match="is not a Hub repository name"):
        hub.push_to_hub(run, "not a/valid/name", token=TOKEN)
    (run / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no saved model yet"):
        hub.push_to_hub(run, REPO, token=TOKEN)
    with pytest.raises(ValueError, match="not a run folder"):
        hub.push_to_hub(tmp_path, REPO, token=TOKEN)
    assert "create" not in fake_hub


def test_the_page_refuses_while_a_run_is_training(run, tmp_path):
    class Training:
        running = True

        def snapshot(self):
            return RunState(status="training", best_epoch=1, run_dir=str(run))

    with pytest.raises(DataError, match="Train a model first"):
        use.saved_run(Session(tmp_path))
    with pytest.raises(DataError, match="A run is training"):
        use.saved_run(Session(tmp_path, job=Training()))


def test_the_page_exports_onnx_and_shows_the_code(tmp_path, class_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a page that is not private must not use it
    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False)
    url, demo = serve(settings)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="Train a model first"):
            client.predict(api_name="/export_onnx")
        archive = zip_folder(class_folder, tmp_path / "colours.zip", wrapper="colours")
        client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        start_training(client, epochs=1)
        status = poll_until(client, "Finished", "Stopped", "Failed", "Diverged")[0]
        assert status.startswith("**Finished**"), status
        button, said, code = client.predict(api_name="/export_onnx")
        assert button["visible"] and "model.onnx" in button["label"]
        path = Path(button["value"])  # fetched by the client
        assert path.name == "model.onnx" and path.stat().st_size > 0
        assert "checked against PyTorch" in said and "100.0%" in said
        assert "local-dir:" in code and "onnxruntime" in code
        snippet = client.predict(api_name="/usage_snippet")
        assert "local-dir:" in snippet and "timm.create_model(" in snippet
        with pytest.raises(Exception, match="No Hugging Face token"):
            client.predict(REPO, "", True, api_name="/push_to_hub")
    finally:
        demo.close()


def test_hub_failures_are_told_by_their_types_not_their_names():
    class ConnectError(Exception):  # named like httpx's, but no transport error
        pass

    assert hub._hub_problem(ConnectError("boom")) is None
    assert hub._hub_problem(transport_error()).startswith(
        "The Hugging Face Hub could not be reached"
    )
    assert hub._hub_problem(TimeoutError()).startswith("The Hugging Face Hub could not be reached")
