"""`tlapp check / train / lr-find / predict / app` end to end, as a user would run them."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from conftest import write_classes

from tlapp import runs
from tlapp.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def tlapp(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tlapp", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=240,
    )


def test_check_prints_the_table_and_accepts_good_data(class_folder):
    copy = class_folder / "red" / "copy.png"
    copy.write_bytes(next((class_folder / "red").iterdir()).read_bytes())
    out = tlapp("check", class_folder)
    assert "health: exact duplicates: 2 copies of one picture" in out.stdout
    copy.unlink()
    out = tlapp("check", class_folder)
    assert out.returncode == 0, out.stderr
    assert "(all classes)" in out.stdout and "ready to train" in out.stdout
    assert "36 images in 3 classes" in out.stdout


def test_check_refuses_unusable_data_with_one_line(tmp_path):
    write_classes(tmp_path / "one", classes={"cat": (1, 2, 3)})
    out = tlapp("check", tmp_path / "one")
    assert out.returncode == 1
    said = [
        line for line in out.stderr.splitlines() if not re.fullmatch(r"[A-Z][a-z ]+: \d+/\d+", line)
    ]  # progress lines ("Scanning images: 12/12") aside, one line says why
    assert len(said) == 1 and said[0].startswith("cannot train: At least 2 classes")
    missing = tlapp("check", tmp_path / "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_train_then_predict(class_folder, tmp_path):
    run = tmp_path / "run"
    out = tlapp(
        "train",
        class_folder,
        "--model",
        "test_resnet",
        "--freeze",
        "all",
        "--epochs",
        2,
        "--img-size",
        48,
        "--batch-size",
        8,
        "--lr",
        0.01,
        "--weights",
        "none",
        "--out",
        run,
    )
    assert out.returncode == 0, out.stderr
    assert "Done. Best model" in out.stdout
    files = {p.name for p in run.iterdir()}
    assert {"run.json", "config.json", "model.safetensors", "metrics.csv"} <= files
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0]  # head only: the fitted head
    csv = tmp_path / "predictions.csv"
    pred = tlapp(
        "predict", run, class_folder / "red", class_folder / "blue" / "blue_00.png", "--csv", csv
    )
    assert pred.returncode == 0, pred.stderr
    (class_folder / "broken.jpg").write_text("not an image")
    pred = tlapp(
        "predict",
        run,
        class_folder / "red",
        class_folder / "blue" / "blue_00.png",
        class_folder / "broken.jpg",
        "--csv",
        csv,
    )
    assert pred.returncode == 1  # one image could not be read: said, not fatal
    table = pd.read_csv(csv, keep_default_na=False)
    assert len(table) == 14 and table["path"].iloc[-1].endswith("broken.jpg")
    good = table[table["error"] == ""]
    assert len(good) == 13 and set(good["prediction"]) <= {"red", "green", "blue"}
    probs = good[["p(blue)", "p(green)", "p(red)"]].astype(float)
    assert ((probs >= 0) & (probs <= 1)).all().all()
    assert (probs.sum(axis=1) - 1).abs().max() < 1e-5
    assert (good["confidence"].astype(float) == probs.max(axis=1)).all()
    assert "skipped" in table["error"].iloc[-1]


def test_a_terminated_run_stops_as_ctrl_c_stops_it_and_says_so(class_folder, tmp_path):
    """SIGTERM (kill, a container stopping, a scheduler's time limit) is Ctrl-C: the run stops
    within a batch and its folder records it, with the best model and the checkpoint kept."""
    run = tmp_path / "run"
    train = subprocess.Popen(
        [sys.executable, "-m", "tlapp", "train", str(class_folder), "--model", "test_resnet"]
        + ["--weights", "none", "--img-size", "32", "--freeze", "1", "--epochs", "500"]
        + ["--out", str(run), "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not (run / runs.CHECKPOINT / runs.TRAINER_STATE).exists():
            assert train.poll() is None, train.communicate()[1]
            time.sleep(0.05)
        train.terminate()  # SIGTERM
        out, err = train.communicate(timeout=120)
    finally:
        train.kill()
    assert train.returncode == 130, err
    assert "stopping after this batch" in err
    info = runs.read_config(run)
    assert info["status"] == "stopped" and (run / runs.WEIGHTS).exists()
    last = max(row["epoch"] for row in runs.read_metrics(run))
    assert runs.read_checkpoint(run, "cpu")[1]["epoch"] == last  # resumable from there


def test_bad_settings_get_a_clear_error(class_folder):
    out = tlapp("train", class_folder, "--model", "resnet1", "--epochs", 1)
    assert out.returncode == 2 and "not a timm model name" in out.stderr
    assert "Did you mean resnet18" in out.stderr  # the closest name first
    out = tlapp("lr-find", class_folder, "--model", "resnet1")
    assert out.returncode == 2 and "resnet18" in out.stderr
    out = tlapp("train", class_folder, "--epochs", 0)
    assert out.returncode == 2 and "Epochs must be at least 1" in out.stderr


def test_lr_find_suggests_a_rate_and_train_takes_the_recipe(class_folder, tmp_path):
    common = ("--model", "test_resnet", "--weights", "none", "--img-size", 48, "--batch-size", 4)
    out = tlapp("lr-find", class_folder, *common, "--num-it", 30)
    assert out.returncode == 0, out.stderr
    assert "suggested learning rate:" in out.stdout and "valley" in out.stdout
    suggested = [line for line in out.stdout.splitlines() if line.endswith("<- suggested")]
    assert len(suggested) == 1  # the table marks the suggested step
    assert suggested[0].split()[0] in out.stdout.splitlines()[-1]
    run = tmp_path / "run"
    out = tlapp(
        "train",
        class_folder,
        *common,
        "--epochs",
        1,
        "--recipe",
        "one-phase",
        "--layer-decay",
        0.5,
        "--out",
        run,
    )
    assert out.returncode == 0, out.stderr
    config = runs.read_config(run)["config"]
    assert config["recipe"] == "one-phase" and config["layer_decay"] == 0.5
    out = tlapp("lr-find", class_folder, *common, "--freeze", "all")
    assert out.returncode == 2 and "without a learning rate" in out.stderr


def test_version_and_help_show_every_setting_with_its_default():
    out = tlapp("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tlapp {version('tlapp')}"
    text = tlapp("train", "--help").stdout
    options = text[text.index("settings (TrainConfig") :]
    entries = {}
    for entry in re.split(r"\n  (?=--)", options)[1:]:  # one per flag
        entries[entry.split()[0].rstrip(",")] = " ".join(entry.split())
    for field in fields(TrainConfig):
        if field.name == "data":  # the positional DATA
            continue
        flag = "--" + field.name.replace("_", "-")
        assert flag in entries, flag
        if field.default != "":
            assert f"(default: {field.default})" in entries[flag], entries[flag]
    assert "--augment, --no-augment" in text


def test_json_records_resume_to_more_epochs_and_top_k(class_folder, tmp_path):
    check = tlapp("check", class_folder, "--json")
    assert check.returncode == 0, check.stderr
    record = json.loads(check.stdout)
    assert record["ready"] and record["classes"] == ["blue", "green", "red"]
    assert sum(sum(record["counts"][s].values()) for s in ("train", "val", "test")) == 36
    assert record["counts"]["test"] == {"blue": 2, "green": 2, "red": 2}  # held back: 15%
    assert record["counts"]["total"] == {"blue": 12, "green": 12, "red": 12}
    assert record["skipped"] == [] and record["problems"] == [] and record["health"] == []
    assert "ready to train" in check.stderr
    missing = tlapp("check", tmp_path / "nope", "--json")
    assert missing.returncode == 2 and "does not exist" in json.loads(missing.stdout)["error"]

    run = tmp_path / "run"
    common = ("--model", "test_resnet", "--weights", "none", "--img-size", 48, "--batch-size", 4)
    out = tlapp(
        "train",
        class_folder,
        *common,
        "--epochs",
        1,
        "--recipe",
        "one-phase",
        "--out",
        run,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["status"] == "done" and record["message"].startswith("Done. Best model")
    assert record["run_dir"] == str(run) and record["best_epoch"] == 1
    assert 0 <= record["best_val_accuracy"] <= 1
    test = record["test"]  # a folder without test/: the held-back share, scored once
    assert test["images"] == 6 and test["correct"] == round(test["accuracy"] * 6)
    assert test["accuracy_low"] <= test["accuracy"] <= test["accuracy_high"]
    assert 0 < test["accuracy_high"] - test["accuracy_low"] < 1

    # --resume --epochs N: N epochs in total, more than the run has done
    again = tlapp("train", "--resume", run, "--epochs", 1)
    assert again.returncode == 2 and "already trained 1 epoch," in again.stderr
    again = tlapp("train", "--resume", run)
    assert again.returncode == 2 and "give --epochs N" in again.stderr
    again = tlapp("train", class_folder, "--resume", run, "--lr", 0.1)
    assert again.returncode == 2 and "leave out DATA, --lr" in again.stderr
    longer = tlapp("train", "--resume", run, "--epochs", 2, "--json")
    assert longer.returncode == 0, longer.stderr
    assert json.loads(longer.stdout)["status"] == "done"
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert runs.read_config(run)["config"]["epochs"] == 2

    pred = tlapp("predict", run, class_folder / "red", "--top-k", 2, "--device", "cpu", "--json")
    assert pred.returncode == 0, pred.stderr
    predictions = json.loads(pred.stdout)["predictions"]
    assert len(predictions) == 12
    for row in predictions:
        assert [c["class"] for c in row["top_k"]][:1] == [row["prediction"]]
        assert len(row["top_k"]) == 2 and row["error"] == ""
        assert row["top_k"][0]["probability"] >= row["top_k"][1]["probability"]
    human = tlapp("predict", run, class_folder / "red" / "red_00.png", "--top-k", 2)
    assert human.returncode == 0 and "top 2" in human.stdout


def test_app_command_serves_what_app_py_serves(monkeypatch):
    out = tlapp("app", "--help")
    assert out.returncode == 0 and "--port" in out.stdout
    from tlapp import cli, web

    spec = importlib.util.spec_from_file_location("app_entry", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.serve is web.serve  # one function behind `python app.py` and `tlapp app`
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "GRADIO_SHARE"):
        monkeypatch.delenv(name, raising=False)
    served = []
    monkeypatch.setattr(web, "serve", lambda: served.append(os.environ["GRADIO_SERVER_PORT"]))
    assert cli.main(["app", "--port", "7999"]) == 0 and served == ["7999"]


def test_compare_lists_every_run_with_its_method_accuracy_time_and_size(class_folder, tmp_path):
    common = ("--model", "test_resnet", "--weights", "none", "--img-size", 48, "--batch-size", 4)
    for name, extra in (
        ("head", ("--freeze", "all")),
        ("proto", ("--freeze", "all", "--head", "prototypes")),
        ("tuned", ("--epochs", 1, "--recipe", "one-phase")),
    ):
        out = tlapp("train", class_folder, *common, *extra, "--out", tmp_path / "runs" / name)
        assert out.returncode == 0, out.stderr
    out = tlapp("compare", tmp_path / "runs", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["run"]: r for r in json.loads(out.stdout)["runs"]}
    assert set(rows) == {"head", "proto", "tuned"}
    assert rows["proto"]["method"] == "prototypes (no training)"
    assert rows["head"]["method"] == "head only"
    assert rows["tuned"]["method"] == "one-phase fine-tune"
    for row in rows.values():
        assert 0 <= row["val_accuracy"] <= 1 and row["size_mb"] > 0 and row["seconds"] >= 0
    accuracies = [r["val_accuracy"] for r in json.loads(out.stdout)["runs"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert tlapp("compare", tmp_path / "nothing-here").returncode == 2


def test_self_train_reports_pseudo_labels_per_class_and_writes_them(tmp_path):
    near = {"a": (128, 120, 120), "b": (120, 128, 120), "c": (120, 120, 128)}
    write_classes(tmp_path / "data" / "train", 2, near, seed=1)
    write_classes(tmp_path / "data" / "val", 10, near, seed=2)
    unlabelled = write_classes(tmp_path / "unlabelled", 20, near, seed=3)
    csv = tmp_path / "pseudo.csv"
    common = ("--model", "test_resnet", "--weights", "none", "--img-size", 48)
    out = tlapp("self-train", tmp_path / "data", unlabelled, *common, "--csv", csv, "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["threshold"] == 0.9 and record["unlabelled"] == 60 and record["val_images"] == 30
    assert 0 < record["taken"] == sum(r["pseudo_labelled"] for r in record["per_class"])
    assert [r["class"] for r in record["per_class"]] == ["a", "b", "c"]
    assert record["val_accuracy_after"] >= record["val_accuracy_before"]
    table = pd.read_csv(csv)
    assert list(table.columns) == ["path", "label", "confidence", "taken"] and len(table) == 60
    bad = tlapp("self-train", tmp_path / "data", unlabelled, *common, "--threshold", 2)
    assert bad.returncode == 2 and "threshold is a probability" in bad.stderr


def test_adabn_adapts_a_run_to_darker_images_and_saves_a_new_run(class_folder, tmp_path):
    import numpy as np
    from PIL import Image

    run = tmp_path / "run"
    common = ("--model", "test_resnet", "--weights", "none", "--img-size", 48, "--batch-size", 8)
    fixed = ("--recipe", "one-phase", "--epochs", 4, "--lr", 0.003, "--no-augment")
    out = tlapp("train", class_folder, *common, *fixed, "--out", run)
    assert out.returncode == 0, out.stderr
    for name, seed in (("target", 5), ("labelled", 6)):
        for path in write_classes(tmp_path / name, 10, seed=seed).rglob("*.png"):
            dark = np.asarray(Image.open(path)).astype(float) * 0.4 + np.array([0, 0, 60])
            Image.fromarray(dark.astype(np.uint8)).save(path)
    out = tlapp("adabn", run, tmp_path / "target", "--labelled", tmp_path / "labelled", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["run_dir"] == str(tmp_path / "run-adabn") and record["target_images"] == 30
    assert record["accuracy_after"] >= record["accuracy_before"] + 0.3
    assert runs.read_config(tmp_path / "run-adabn")["method"] == "one-phase fine-tune + AdaBN"
    pred = tlapp("predict", tmp_path / "run-adabn", tmp_path / "labelled" / "red")
    assert pred.returncode == 0, pred.stderr
    missing = tlapp("adabn", tmp_path / "nowhere", tmp_path / "target")
    assert missing.returncode == 2 and "not a run folder" in missing.stderr


def test_distill_prints_teacher_student_and_int8_and_writes_a_run(class_folder, tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    common = ("--weights", "none", "--img-size", 48, "--batch-size", 8, "--recipe", "one-phase")
    out = tlapp(
        "train", class_folder, "--model", "resnet10t", *common, "--epochs", 2, "--out", teacher
    )
    assert out.returncode == 0, out.stderr
    distil = ("distill", teacher, "--student", "test_resnet", "--weights", "none", "--epochs", 2)
    out = tlapp(*distil, "--temperature", 2, "--out", student, "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["run_dir"] == str(student) and record["status"] == "done"
    assert [row["model"] for row in record["table"]] == ["teacher", "student", "student int8"]
    assert "student int8" in out.stderr and "val accuracy" in out.stderr  # the table
    assert runs.read_config(student)["distillation"]["temperature"] == 2.0
    assert tlapp("predict", student, class_folder / "red").returncode == 0
    bad = tlapp("distill", teacher, "--student", "resnet1")
    assert bad.returncode == 2 and "is not a timm model name" in bad.stderr


def test_distill_exits_1_when_the_student_diverged(monkeypatch, tmp_path):
    """The README's exit codes hold for distill: a diverged student is kept, but the command
    failed (it used to exit 0)."""
    import pandas as pd

    import tlapp.methods
    from tlapp.cli import main
    from tlapp.methods.distill import DistillReport

    def student(status):
        table = pd.DataFrame(
            {"model": ["student"], "size (MB)": [1.5], "CPU latency (ms)": [1.0]}
        ).assign(**{"val accuracy": [0.5]})
        return lambda *a, **k: DistillReport(tmp_path / "s", tmp_path / "t", status, "", table)

    command = ["distill", str(tmp_path / "t"), "--student", "test_resnet"]
    for status, code in (("diverged", 1), ("done", 0), ("stopped", 130)):
        monkeypatch.setattr(tlapp.methods, "distill", student(status))
        assert main(command) == code, status
        assert main([*command, "--json"]) == code, status
