"""`tlapp check / train / lr-find / predict` end to end, as a user would run them."""

import subprocess
import sys

import pandas as pd
from conftest import write_classes

from tlapp import runs


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
    assert out.stderr.strip().startswith("cannot train: At least 2 classes")
    assert len(out.stderr.strip().splitlines()) == 1
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


def test_bad_settings_get_a_clear_error(class_folder):
    out = tlapp("train", class_folder, "--model", "no_such_net", "--epochs", 1)
    assert out.returncode == 1 and "not a timm model name" in out.stderr
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
