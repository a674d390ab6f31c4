"""The Gradio app driven through gradio_client: load data, train, poll to the end, predict."""

import json
from pathlib import Path

import pytest
from conftest import download_run, poll_until, serve, start_training, write_classes, zip_folder
from gradio_client import Client, handle_file

from tlapp.views import confusion_html, downsample
from tlapp.web import AppSettings


@pytest.fixture
def app(tmp_path):
    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False)
    url, demo = serve(settings)
    yield url, settings
    demo.close()


def test_upload_train_poll_and_predict(app, class_folder, tmp_path):
    url, settings = app
    client = Client(url, verbose=False)
    archive = zip_folder(class_folder, tmp_path / "colours.zip", wrapper="colours")
    summary, report, skipped, health = client.predict(
        handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload"
    )
    assert "36 images in 3 classes" in summary and "Ready to train" in summary
    rows = {r[0]: r for r in report["data"]}
    assert set(rows) == {"blue", "green", "red", "(all classes)"}
    assert rows["(all classes)"][-1] == 36
    start_training(client, epochs=3, augment=True)
    out = poll_until(client, "Finished", "Stopped", "Failed", "Diverged")
    status, matrix, per_class = out[0], out[4], out[6]
    assert status.startswith("**Finished**"), status
    for name in ("blue", "green", "red"):
        assert f">{name}</th>" in matrix
    assert [r[0] for r in per_class["data"]] == ["blue", "green", "red"]
    # each visitor's files live in a folder of their own
    sessions = list((settings.home / "sessions").iterdir())
    assert len(sessions) == 1
    # the run downloads as a zip made on the fly: the run the page showed, no copy left on disk
    archive = download_run(url, out[7])
    (run_dir,) = (sessions[0] / "runs").iterdir()
    names = set(archive.namelist())
    assert {
        f"{run_dir.name}/{f}" for f in ("run.json", "config.json", "model.safetensors")
    } <= names
    assert not any("/checkpoint/" in n for n in names) and archive.testzip() is None
    record = json.loads(archive.read(f"{run_dir.name}/run.json"))
    assert record["classes"] == ["blue", "green", "red"] and record["status"] == "done"
    assert (
        archive.read(f"{run_dir.name}/model.safetensors")
        == (run_dir / "model.safetensors").read_bytes()
    )
    assert not list(sessions[0].rglob("*.zip"))
    label, heat = client.predict(
        handle_file(str(next((class_folder / "red").iterdir()))), api_name="/predict"
    )
    assert heat and Path(heat).exists()
    assert label["label"] in {"blue", "green", "red"} and len(label["confidences"]) == 3


def test_training_without_data_is_a_readable_error(app):
    client = Client(app[0], verbose=False)
    with pytest.raises(Exception, match="Load your images first"):
        client.predict(
            "resnet18",
            "",
            "none",
            None,
            "",
            0,
            1,
            64,
            8,
            0.001,
            True,
            "auto",
            "2m",
            api_name="/train",
        )


def test_a_non_zip_upload_is_refused_with_advice(app, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    client = Client(app[0], verbose=False)
    with pytest.raises(Exception, match="zip"):
        client.predict(handle_file(str(tmp_path / "notes.txt")), 0.2, 0.15, api_name="/load_upload")


def test_downsample_keeps_long_curves_small():
    x, y = downsample(list(range(10_000)), limit=300)
    assert len(x) == len(y) == 300 and y[0] < y[-1]
    assert downsample([1.0, 2.0])[1].tolist() == [1.0, 2.0]


def test_confusion_html_escapes_class_names():
    import numpy as np

    html = confusion_html(np.array([[1, 0], [2, 3]]), ["<b>cat</b>", "dog"])
    assert "&lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
    assert html.count("<td") == 4


def test_the_page_finds_a_learning_rate_and_uses_it_in_one_click(app, class_folder, tmp_path):
    client = Client(app[0], verbose=False)
    archive = zip_folder(class_folder, tmp_path / "colours.zip")
    client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
    widgets = ("resnet18", "test_resnet", "none", None, "", 0, 1, 48, 4, 0.001, False, "off", "0")
    plot, said = client.predict(*widgets, api_name="/lr_find")
    assert "Suggested learning rate" in said
    suggestion = float(said.split("**Suggested learning rate: ")[1].split("**")[0])
    assert len(plot["data"]) >= 10 and plot["columns"] == ["log10 lr", "loss"]
    assert client.predict(api_name="/use_lr") == pytest.approx(suggestion)
    frozen = (*widgets[:5], 5, *widgets[6:])  # test_resnet: 5 stages frozen is head only
    with pytest.raises(Exception, match="without a learning rate"):
        client.predict(*frozen, api_name="/lr_find")


def test_instant_baseline_and_kfold_from_the_page(app, class_folder, tmp_path):
    client = Client(app[0], verbose=False)
    archive = zip_folder(class_folder, tmp_path / "colours.zip")
    client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
    widgets = ("resnet18", "test_resnet", "none", None, "", 0, 3, 48, 8, 0.001, False, "off", "0")
    said, table = client.predict(*widgets, api_name="/kfold")
    assert "over 5 folds of 30 labelled images" in said  # 36 less the 6 held back for test
    assert "fewer than 30 images in some class" in said  # 36 images: a small validation set
    assert [row[0] for row in table["data"]] == ["blue", "green", "red"]
    client.predict(*widgets, api_name="/baseline")
    out = poll_until(client, "Finished", "Stopped", "Failed", "Diverged")
    assert out[0].startswith("**Finished**"), out[0]
    run = sorted((app[1].home / "sessions").glob("*/runs/*"))[-1]
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["head"] == "prototypes" and record["config"]["freeze"] == "all"
    assert "Prototypes" in record["head_fit"]
    table = client.predict(api_name="/compare_runs")
    assert [row[1] for row in table["data"]] == ["prototypes (no training)"]
    label, _ = client.predict(
        handle_file(str(next((class_folder / "red").iterdir()))), api_name="/predict"
    )
    assert label["label"] in {"blue", "green", "red"}


def test_beyond_fine_tuning_from_the_page(app, class_folder, tmp_path):
    """Self-training, AdaBN and distillation each answer through the page's API."""
    client = Client(app[0], verbose=False)
    archive = zip_folder(class_folder, tmp_path / "colours.zip")
    client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
    widgets = ("resnet18", "test_resnet", "none", None, "", 0, 2, 48, 8, 0.003, False, "off", "0")
    client.predict(*widgets, api_name="/train")
    assert poll_until(client, "Finished", "Stopped", "Failed")[0].startswith("**Finished**")

    extra = write_classes(tmp_path / "more", per_class=6, seed=5)
    unlabelled = [handle_file(str(p)) for p in sorted(extra.rglob("*.png"))]
    said, table = client.predict(*widgets, unlabelled, 0.5, api_name="/self_train")
    assert "validation accuracy" in said.lower()
    assert [row[0] for row in table["data"]] == ["blue", "green", "red"]

    labelled = zip_folder(extra, tmp_path / "labelled.zip")
    said, download = client.predict(unlabelled, handle_file(str(labelled)), api_name="/adabn")
    assert "BatchNorm statistics" in said and "before" in said
    assert "-adabn" in download_run(app[0], download).namelist()[0]

    table, download = client.predict("test_resnet", 1, api_name="/distill")
    assert {"teacher", "student"} <= {str(row[0]).split()[0] for row in table["data"]}
    assert "-to-test_resnet" in download_run(app[0], download).namelist()[0]
    compared = client.predict(api_name="/compare_runs")
    assert len(compared["data"]) >= 3  # the run, its AdaBN copy and the student


def test_the_sample_is_read_once_for_every_visitor(app, monkeypatch):
    """A workshop's visitors all press the sample button: one scan and health check serve all."""
    import tlapp.web.uploads as uploads

    checks = []
    real = uploads.check_health
    monkeypatch.setattr(uploads, "check_health", lambda d: checks.append(d) or real(d))
    for _ in range(2):
        client = Client(app[0], verbose=False)
        summary, report, _, health = client.predict(0.2, 0.15, api_name="/use_sample")
        assert "500 images in 10 classes" in summary
        assert {r[0] for r in report["data"]} >= {str(d) for d in range(10)}
    assert len(checks) == 1


def test_the_headline_says_class_by_class_when_rare_classes_tell_another_story():
    from tlapp.views import headline_markdown

    test = dict(images=50, correct=45, accuracy=0.9, accuracy_low=0.79, accuracy_high=0.96)
    even = headline_markdown({**test, "macro_f1": 0.9, "balanced_accuracy": 0.9}, 0.92, 2)
    rare = headline_markdown({**test, "macro_f1": 0.6, "balanced_accuracy": 0.55}, 0.92, 2)
    assert "Right 45 times in 50" in even and "Class by class" not in even
    assert "Class by class it finds" in rare and "55% of each class's images" in rare
