"""Progress in stages: plain lines when the output is not a terminal (throttled by a clock the
tests drive), the stages `tlapp train` shows, and the page's line for each stage."""

import io
import json
import subprocess
import sys

from tlapp.cli.progress import Lines, Stages
from tlapp.data import load_dataset
from tlapp.train.state import RunState


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_write_at_most_one_line_per_tenth_and_interval_and_the_last():
    out, clock = io.StringIO(), Clock()
    lines = Lines("Computing embeddings", 400, out, every=5.0, clock=clock)
    for done in range(1, 401):
        clock.now = done * 0.1  # 40 s in all: 4 s per tenth
        lines.update(1)
    lines.close()
    shown = out.getvalue().splitlines()
    counts = [int(line.split(": ")[1].split("/")[0]) for line in shown]
    assert shown[-1] == "Computing embeddings: 400/400"
    assert counts == sorted(set(counts))
    assert [c // 40 for c in counts] == sorted({c // 40 for c in counts})  # one per tenth
    gaps = [(b - a) * 0.1 for a, b in zip(counts, counts[1:-1])]
    assert counts[0] * 0.1 >= 5.0 and all(gap >= 5.0 for gap in gaps)
    assert 5 <= len(shown) <= 8


def test_a_quick_stage_writes_only_its_last_line():
    out, clock = io.StringIO(), Clock()
    lines = Lines("Scanning images", 36, out, clock=clock)
    lines.update(36)
    lines.close()
    lines.close()  # nothing new: nothing written again
    assert out.getvalue() == "Scanning images: 36/36\n"


def test_a_slow_stage_writes_once_it_has_taken_long_enough():
    out, clock = io.StringIO(), Clock()
    lines = Lines("Training", 100, out, every=5.0, clock=clock)
    lines.update(50)
    assert out.getvalue() == ""
    clock.now = 6.0
    lines.set_postfix_str("epoch 1/2, loss 0.500")
    lines.update(1)
    assert out.getvalue() == "Training: 51/100 (epoch 1/2, loss 0.500)\n"


def test_stages_end_a_stage_when_the_next_begins():
    out = io.StringIO()
    show = Stages(out, terminal=False)
    show("Decoding training images", 10, 30)
    show("Decoding training images", 30, 30)
    show("Computing embeddings", 12, 36)
    show("Training", 8, 16, "epoch 1/2, loss 1.000")
    show.close()
    assert out.getvalue().splitlines() == [
        "Decoding training images: 30/30",
        "Computing embeddings: 12/36",  # ended early: it says so
        "Training: 8/16 (epoch 1/2, loss 1.000)",
    ]


def test_stages_on_a_terminal_are_tqdm_bars():
    out = io.StringIO()
    show = Stages(out, terminal=True)
    show("Scanning images", 5, 10)
    assert type(show.bar).__name__ == "tqdm" and show.bar.desc == "Scanning images"
    show("Training", 3, 20, "epoch 1/1")
    assert show.bar.n == 3 and show.bar.total == 20
    show.close()
    assert show.bar is None


def test_loading_a_dataset_reports_its_stages(class_folder):
    heard = []
    load_dataset(class_folder, progress=lambda *p: heard.append(p))
    last = {what: (done, total) for what, done, total in heard}
    assert last["Scanning images"] == (36, 36)
    assert last["Finding duplicates"] == (36, 36)


def test_the_page_names_the_stage_under_way_between_training_steps():
    state = RunState(status="training", epoch=1, epochs=2, step=4, steps_per_epoch=8)
    state.step_losses, state.message, state.stage = [1.0], "Saving the run: 1/3…", "Saving the run"
    assert state.progress_line() == "Epoch 1/2 · Saving the run: 1/3…"
    state.stage = ""  # training steps again
    assert state.progress_line().startswith("Epoch 1/2 · step 4/8")


def test_train_shows_every_stage_as_lines_and_json_stays_clean(class_folder, tmp_path):
    out = subprocess.run(
        [
            *(sys.executable, "-m", "tlapp", "train", str(class_folder)),
            *("--model", "test_resnet", "--weights", "none", "--img-size", "48"),
            *("--batch-size", "4", "--epochs", "2", "--no-feature-cache"),
            *("--out", str(tmp_path / "run"), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "done"  # progress never reaches stdout
    lines = out.stderr.splitlines()
    for line in (
        "Scanning images: 36/36",
        "Decoding training images: 24/24",  # 36 less 6 for validation and 6 held back to test
        "Computing embeddings: 36/36",
        "Saving the run: 3/3",
    ):
        assert line in lines, out.stderr
    training = [line for line in lines if line.startswith("Training: ")]
    assert training[-1].startswith("Training: 12/12 (epoch 2/2, loss ")
    assert lines.index("Computing embeddings: 36/36") < lines.index(training[-1])
    totals = {line.split("/")[-1] for line in lines if line.startswith("Computing embeddings")}
    assert totals == {"36"}  # one count over train, validation and test images
    assert "\r" not in out.stderr  # no redrawn bars in a log
