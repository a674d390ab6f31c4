"""A time budget: fine-tuning planned from a measurement of the machine, kept to as it runs."""

import threading
import time

import pytest

from tlapp.config import make_config, parse_duration
from tlapp.data import DataError, load_dataset
from tlapp.train import Job, Trainer
from tlapp.train.budget import Speeds, choose, plan_run

FAST = dict(model="test_resnet", weights="none", img_size=48, batch_size=8, runs_root="unused")


def test_the_plan_trains_the_most_stages_that_leave_three_epochs():
    config = make_config(data="d", epochs=5)
    counts = {"train": 100, "val": 20, "test": 20}
    # An epoch: 100 training steps' images and 20 validation images' forward passes.
    fast = Speeds(
        decode=0.001,
        forward=0.005,
        train_step={7: 0.01, 6: 0.02, 5: 0.04},
        stages=8,
        measured_in=1.0,
    )
    assert choose(config, fast, counts, left=10.0) == (6, 4, pytest.approx(4 * 2.1))
    assert choose(config, fast, counts, left=100.0) == (5, 5, pytest.approx(5 * 4.1))
    # Not three epochs of even the last stage: as many as fit; not one: head only.
    assert choose(config, fast, counts, left=2.5) == (7, 2, pytest.approx(2 * 1.1))
    assert choose(config, fast, counts, left=0.5) == (8, 0, 0.0)


def test_durations_read_as_people_write_them():
    assert [parse_duration(t) for t in ("90", "90s", "2m", "1m30s", "1h", "2.5m")] == [
        90,
        90,
        120,
        90,
        3600,
        150,
    ]
    assert make_config(data="d", time_budget="2m").time_budget == 120
    with pytest.raises(ValueError, match="such as 90s, 2m or 1m30s, not 'soon'"):
        make_config(data="d", time_budget="soon")


def test_a_plan_measures_the_machine_and_stays_within_the_run_settings(class_folder):
    data = load_dataset(class_folder)
    config = make_config(data=str(class_folder), freeze=2, epochs=3, time_budget=600, **FAST)
    plan = plan_run(config, data)
    assert plan.config.freeze >= 2 and plan.config.epochs == 3  # an hour's room: all it asks
    assert plan.seconds < 600
    assert plan.text.startswith("Time budget 10 min 00 s, 36 images")
    assert "fine-tuned for 3 epochs after the head" in plan.text


@pytest.mark.parametrize("augment", [True, False])  # the measured batch is augmented or not
def test_a_run_with_augmentation_or_without_is_planned(class_folder, augment):
    data = load_dataset(class_folder)
    config = make_config(data=str(class_folder), augment=augment, time_budget=600, **FAST)
    assert plan_run(config, data).config.epochs == config.epochs


def test_a_budget_that_cannot_hold_phase_one_is_refused_before_anything_is_written(
    class_folder, tmp_path
):
    with pytest.raises(DataError, match="Even the first phase .* more than the time budget"):
        plan_run(
            make_config(data=str(class_folder), time_budget=0.01, **FAST),
            None or load_dataset(class_folder),
        )
    out = tmp_path / "run"
    config = make_config(data=str(class_folder), out=str(out), time_budget=0.01, **FAST)
    state = Job(config).start().wait(timeout=120)
    assert state.status == "failed" and "time budget" in state.message
    assert not out.exists()


def test_fine_tuning_stops_when_another_epoch_would_end_past_the_deadline(class_folder, tmp_path):
    config = make_config(data=str(class_folder), epochs=4, **FAST)
    t = Trainer(
        config,
        load_dataset(class_folder),
        tmp_path / "run",
        [],
        threading.Event(),
        deadline=time.monotonic(),  # already past: one fine-tuning epoch, then no more
    )
    assert t.fit() == "done"
    assert t.epoch == 1 and t.last_epoch == 4 and t.best_epoch in (0, 1)
    assert any("to stay within the time budget" in note for note in t.notes)


def test_time_already_spent_counts_against_the_budget(class_folder):
    data = load_dataset(class_folder)
    config = make_config(data=str(class_folder), freeze=2, epochs=3, time_budget=600, **FAST)
    with pytest.raises(DataError, match="more than the time budget"):
        plan_run(config, data, spent=599.0)  # start-up took all but a second of it
    plan = plan_run(config, data, spent=30.0)
    assert plan.seconds >= 30.0 and plan.ending > 0
