"""A training run in a background thread: start it, read snapshots, stop it.

    config = make_config(data="photos/", model="resnet18", freeze=3, epochs=5)
    job = Job(config).start()
    while job.running:
        state = job.snapshot()      # a plain RunState copy, safe to read from any thread
        print(state.progress_line())
        time.sleep(1)
    job.stop()                      # ends within a batch; the best model so far is kept

This package never imports gradio: the page and the CLI only start jobs and read snapshots.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import threading
import time
import traceback
from pathlib import Path

from .. import runs
from ..config import TrainConfig, make_config
from ..data import DataError, Dataset, config_dataset
from ..models import ModelError
from .budget import Plan, plan_run
from .callbacks import LiveState, RunWriter
from .distributed import World
from .hardware import background_priority
from .loop import Trainer
from .slots import TrainingSlots
from .state import RunState, duration


class Job:
    """A training run in a background thread. Start it, read snapshots, stop it.

    With `slots`, the job waits for its turn on the machine first. `resume=True` continues the
    run in `config.out` from its last finished epoch."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset | None = None,
        slots: TrainingSlots | None = None,
        resume: bool = False,
        callbacks: list | None = None,
        started: float | None = None,
    ):
        self.config, self.dataset, self.slots, self.resume = config, dataset, slots, resume
        # time.monotonic() from which a time budget counts: the CLI's process start; None: when
        # training begins (on the page, after any wait for a free slot).
        self.started = started
        self.callbacks = list(callbacks or [])  # more listeners to the Trainer's events
        self._state = RunState(epochs=config.epochs, message="Loading the data and the model…")
        self._lock, self._stop, self._finish = (
            threading.Lock(),
            threading.Event(),
            threading.Event(),
        )
        self._thread: threading.Thread | None = None

    def start(self) -> Job:
        self._thread = threading.Thread(
            target=self._run, name=f"tlapp-train-{self.config.model}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop within a batch (or leave the queue); the best model so far is kept."""
        self._stop.set()

    def finish_epoch_and_stop(self) -> None:
        """What happens when the page is closed: end after the current epoch, saved."""
        self._finish.set()
        if self.snapshot().status in ("queued", "starting"):
            self._stop.set()

    @property
    def short(self) -> bool:
        """Head only (or prototypes): seconds of work, so it takes the slots' express line."""
        return str(self.config.freeze) == "all"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunState:
        if self._thread:
            self._thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> RunState:
        with self._lock:
            state = copy.copy(self._state)
            state.step_losses = list(state.step_losses)
            state.history = [dict(row) for row in state.history]
            state.classes, state.notes = list(state.classes), list(state.notes)
        return state  # confusion and per_class are replaced, never mutated, so sharing is safe

    def remaining_seconds(self) -> float | None:
        with self._lock:
            return self._state.eta_s if self._state.status == "training" else None

    def _run(self) -> None:
        if self.slots:  # a machine shared with the page: the page comes first
            background_priority()
            if not self._wait_for_slot():
                return
        try:
            self._train()
        finally:
            if self.slots:
                self.slots.release(self)

    def _wait_for_slot(self) -> bool:
        def show(place: int, eta: float | None) -> None:
            wait = f", about {duration(eta)} to wait" if eta is not None else ""
            with self._lock:
                self._state.status = "queued"
                self._state.message = (
                    f"Waiting for the machine: place {place} in the queue{wait}. "
                    "Training starts by itself."
                )

        if self.slots.acquire(self, self._stop, show):
            with self._lock:
                self._state.status, self._state.message = (
                    "starting",
                    "Loading the data and the model…",
                )
            return True
        with self._lock:
            self._state.status, self._state.message = (
                "stopped",
                "Stopped while waiting in the queue.",
            )
        return False

    def _train(self) -> None:
        run_dir = None
        try:
            dataset = self.dataset or config_dataset(self.config)
            dataset.check()
            config, plan, deadline = self._planned(dataset)  # before anything is written
            run_dir = self._make_run_dir()
            with self._lock:
                self._state.run_dir = str(run_dir)
            # The run folder is complete before watchers see the run end (a download then
            # has the final run.json).
            callbacks = [RunWriter(run_dir), LiveState(self._state, self._lock), *self.callbacks]
            trainer = Trainer(
                config,
                dataset,
                run_dir,
                callbacks,
                self._stop,
                self._finish,
                resume_from=run_dir if self.resume else None,
                deadline=deadline,
            )
            if plan:
                trainer.notes.append(plan.text)
            trainer.fit()
        except (DataError, ModelError, runs.RunError, ValueError) as err:
            self._fail(str(err))
        except OSError as err:
            self._fail(disk_message(err))
        except Exception as err:  # a bug or an unexpected fault: say so, keep the details
            detail = traceback.format_exc()
            if run_dir:
                with contextlib.suppress(OSError):
                    (run_dir / "error.log").write_text(detail, encoding="utf-8")
            self._fail(unexpected_message(err, run_dir))

    def _planned(self, dataset: Dataset) -> tuple[TrainConfig, Plan | None, float | None]:
        """The config to train, the time budget's plan (measured now) and its deadline
        (time.monotonic()); a resumed run keeps its own plan."""
        if not self.config.time_budget or self.resume:
            return self.config, None, None
        started = self.started or time.monotonic()
        with self._lock:
            self._state.message = "Measuring this machine's speed for the time budget…"
        plan = plan_run(self.config, dataset, spent=time.monotonic() - started)
        with self._lock:
            self._state.epochs = plan.config.epochs
        # Fine-tuning ends early enough to leave the test pass and saving inside the budget.
        return plan.config, plan, started + self.config.time_budget - plan.ending

    def _make_run_dir(self) -> Path:
        if self.config.out:
            path = Path(self.config.out)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return runs.new_run_dir(self.config.runs_root, self.config.model)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._state.status, self._state.message, self._state.eta_s = "failed", message, None
            run_dir = self._state.run_dir
        if run_dir:
            with contextlib.suppress(Exception):  # the message above is what matters
                info = runs.read_config(run_dir)
                info.update(status="failed", message=message)
                runs.write_config(run_dir, info)


def unexpected_message(err: Exception, run_dir: Path | None) -> str:
    what = f"{type(err).__name__}: {err}"
    if World.current().parallel:  # under torchrun, most often another process ended first
        return (
            f"One of the run's processes failed or lost contact with the others ({what}); "
            "each process prints its own error. " + (runs.how_to_go_on(run_dir) if run_dir else "")
        )
    return f"Training failed unexpectedly ({what}). The details are in error.log in the run folder."


def disk_message(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return (
            "The disk is full, so the run stopped; the best model saved before is intact. "
            "Free some space and resume the run."
        )
    return f"A file could not be written or read ({err.strerror or err}): the run stopped."


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The configuration of an earlier run, to continue it in the same folder."""
    saved = runs.read_config(run_dir)["config"]
    saved.setdefault("recipe", "one-phase")  # runs from before the two-phase recipe
    saved.setdefault("test_fraction", 0.0)  # runs from before test shares held none back
    saved.setdefault("framing", "crop")  # runs from before framing: the model's own crop
    saved.setdefault("average_weights", False)  # runs from before averaging: the last weights
    saved.update(out=str(run_dir), **overrides)
    return make_config(**saved)


def train_quietly(config: TrainConfig, dataset: Dataset, resume: bool = False) -> int:
    """A process other than rank 0: the same Trainer with no callbacks (rank 0 writes the run
    folder and prints); returns the exit code `tlapp train` would."""
    dataset.check()
    run_dir = Path(config.out) if config.out else None  # read when resuming, never written
    trainer = Trainer(
        config, dataset, run_dir, [], threading.Event(), resume_from=run_dir if resume else None
    )
    return {"done": 0, "stopped": 130}.get(trainer.fit(), 1)
