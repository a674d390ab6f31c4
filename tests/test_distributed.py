"""`torchrun -m tlapp train` on two CPU processes (gloo): the result of a single process, one
complete run folder, each process on its own shard."""

import json
import os
import subprocess
import sys

import pandas as pd
import timm
import torch
import torch.nn.functional as F
from conftest import free_port

from tlapp import runs
from tlapp.predict import Predictor
from tlapp.train.distributed import RECORD

TIMEOUT = 240


def train(data, out, model: str, processes: int = 1, epochs: int = 2, script=None):
    """`tlapp train` on the CPU, under torchrun when `processes` > 1; its own embedding cache.
    `script`: a Python file torchrun runs in place of `-m tlapp`, with the same arguments."""
    launch = [sys.executable, "-m", "tlapp"]
    if processes > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *([str(script)] if script else ["-m", "tlapp"]),
        ]
    settings = {
        "--model": model,
        "--weights": "none",
        "--img-size": 32,
        "--epochs": epochs,
        "--freeze": 1,  # the stem: the stages after it fine-tune
        "--batch-size": 8,
        "--lr": 0.003,
        "--device": "cpu",
        "--precision": "fp32",
        "--cache-dir": out.parent / f"{out.name}-cache",
        "--out": out,
    }
    args = [str(x) for pair in settings.items() for x in pair]
    # Without augmentation each step of a run on two processes trains on the images of the
    # single process's step, half on each.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*launch, "train", str(data), *args, "--no-augment"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def files(run):
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def test_two_processes_train_as_one_does_and_write_one_complete_run(class_folder, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    # A ViT: no BatchNorm, whose batch statistics would differ on half a batch.
    alone = train(class_folder, single, "test_vit")
    assert alone.returncode == 0, alone.stderr
    out = train(class_folder, double, "test_vit", processes=2)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Done.") == 1  # rank 0 alone reports

    # The single process's results: the same steps on the same images, every metric gathered.
    ours, theirs = pd.read_csv(double / runs.METRICS), pd.read_csv(single / runs.METRICS)
    assert ours["epoch"].tolist() == theirs["epoch"].tolist() == [0, 1, 2]
    numbers = ["train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_ece"]
    assert (ours[numbers] - theirs[numbers]).abs().max().max() < 1e-3
    assert ours["train_loss"].iloc[1] != ours["train_loss"].iloc[2]  # it did train

    # The same run folder as one process writes, and the record of how it was split.
    assert files(double) == files(single) | {RECORD}
    info = runs.read_config(double)
    assert info["status"] == "done" and info["device"] == "cpu"
    record = json.loads((double / RECORD).read_text())
    assert record["processes"] == 2 and record["backend"] == "gloo"
    assert record["batch_per_process"] == 4
    train_images = info["dataset"]["images"]["train"]
    assert record["train_images"] == train_images
    shard = -(-train_images // 2)  # DistributedSampler pads the shards to equal sizes
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    for epoch in record["epochs"]:
        assert epoch["images_per_process"] == [shard, shard]
        assert epoch["distinct"] == train_images  # every image, each on one process

    # The kept model loads with plain timm, and the app's predictor gives the predictions
    # recorded for its epoch on every validation image.
    model = timm.create_model(f"local-dir:{double}", pretrained=True)
    assert model.num_classes == 3
    recorded = pd.read_csv(double / runs.PREDICTIONS)
    table = Predictor(double).table(recorded["path"].tolist())
    assert table["prediction"].tolist() == recorded["predicted"].tolist()


def test_every_process_validates_the_model_rank_0_saves(class_folder, tmp_path):
    """With BatchNorm, which DDP does not average, the last epoch's validation loss (gathered
    from both processes) is the saved checkpoint's own."""
    run = tmp_path / "run"
    out = train(class_folder, run, "test_resnet", processes=2)
    assert out.returncode == 0, out.stderr
    predictor = Predictor(run)
    weights, state = runs.read_checkpoint(run, "cpu")
    assert state["epoch"] == 2
    predictor.model.load_state_dict(weights)
    recorded = pd.read_csv(run / runs.PREDICTIONS)
    with torch.no_grad():
        logits = predictor.model(predictor.batch(recorded["path"].tolist()))
    targets = torch.tensor(recorded["true"].map(predictor.classes.index).to_numpy())
    last = pd.read_csv(run / runs.METRICS).iloc[-1]
    assert last["epoch"] == 2
    assert abs(F.cross_entropy(logits, targets).item() - last["val_loss"]) < 1e-4


FAIL_ON_RANK_1 = """
import os, sys
from tlapp.cli import main
from tlapp.train import loop

if os.environ["RANK"] == "1":
    def fail(self):
        if self.epoch == 2:
            raise RuntimeError("rank 1 fails on purpose")
        return train_epoch(self)

    train_epoch, loop.Trainer.train_epoch = loop.Trainer.train_epoch, fail
sys.exit(main())
"""


def test_a_process_that_fails_ends_the_run_with_a_record_that_says_so(class_folder, tmp_path):
    """torchrun ends the other processes (SIGTERM) when one fails: rank 0 still records how the
    run ended, and how to go on from its last finished epoch."""
    script = tmp_path / "fail_on_rank_1.py"
    script.write_text(FAIL_ON_RANK_1)
    run = tmp_path / "run"
    out = train(class_folder, run, "test_vit", processes=2, epochs=50, script=script)
    assert out.returncode != 0
    assert "rank 1 fails on purpose" in out.stderr  # the failing process's own error
    assert out.stderr.count("Scanning images") == 1  # rank 0 alone shows progress
    info = runs.read_config(run)
    assert info["status"] in ("failed", "stopped"), info["status"]  # not left at "training"
    assert runs.read_checkpoint(run, "cpu")[1]["epoch"] == 1
    if info["status"] == "failed":
        assert "One of the run's processes failed" in info["message"]
        assert f"tlapp train --resume {run}" in info["message"]
