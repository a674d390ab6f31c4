"""Progress on stderr, one bar per stage: scanning, hashing, decoding, embeddings, training,
saving.

    show = Stages()                          # any `progress(what, done, total)` takes it
    dataset = load_dataset(data, progress=show)
    job = Job(config, dataset, callbacks=[StageEvents(show)]).start()
    ...
    show.close()                             # the last stage's bar, or its last line

On a terminal each stage gets a tqdm bar named after it, shown once the stage has taken a
second and closed when the next stage starts. Anywhere else (a log file, a pipe, CI) tqdm would
still redraw its bar with carriage returns, every redraw ending up in the log, and `disable`
would show nothing at all: there `Lines` writes plain lines instead, at most one per tenth of
the stage and `every` seconds apart, and the stage's last count. stdout stays free for results
and for `--json`.
"""

from __future__ import annotations

import sys
import time


class Lines:
    """One stage's progress as plain lines ("Computing embeddings: 200/400"), for output that
    is not a terminal. It takes the part of tqdm's interface that `Stages` uses."""

    def __init__(self, desc: str, total: int, file, every: float = 5.0, clock=time.monotonic):
        self.desc, self.total, self.file, self.every, self.clock = desc, total, file, every, clock
        self.n, self.postfix, self.shown, self.last = 0, "", -1, clock()

    def update(self, steps: int = 1) -> None:
        self.n += steps
        now = self.clock()
        tenth = self.n * 10 // max(self.total, 1)
        if tenth > self.shown * 10 // max(self.total, 1) and now - self.last >= self.every:
            self.write(now)

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.n != self.shown:
            self.write(self.clock())

    def write(self, now: float) -> None:
        detail = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total}{detail}", file=self.file, flush=True)
        self.shown, self.last = self.n, now


class Stages:
    """`progress(what, done, total)` for work in stages: a new bar (or `Lines`) whenever `what`
    changes. `detail` goes after the count (the epoch and loss of training)."""

    def __init__(self, file=None, terminal: bool | None = None):
        self.file = file or sys.stderr
        self.terminal = self.file.isatty() if terminal is None else terminal
        self.what, self.bar = None, None

    def __call__(self, what: str, done: int, total: int, detail: str = "") -> None:
        if what != self.what:
            self.close()
            self.what, self.bar = what, self.open(what, total)
        self.bar.total = total  # the training steps change when the batch size is lowered
        if detail:
            self.bar.set_postfix_str(detail, refresh=False)
        self.bar.update(done - self.bar.n)

    def open(self, what: str, total: int):
        if not self.terminal:
            return Lines(what, total, self.file)
        from tqdm import tqdm

        unit = "step" if what == TRAINING else "it"
        return tqdm(total=total, desc=what, unit=unit, file=self.file, delay=1.0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.what, self.bar = None, None


TRAINING = "Training"


class StageEvents:
    """A Trainer callback that shows its stages on `Stages`: what it reports (decoding,
    embeddings, saving) and the training steps, with the epoch, the loss and the last
    validation accuracy."""

    def __init__(self, show: Stages):
        self.show, self.accuracy = show, ""

    def on_progress(self, t) -> None:
        self.show(*t.progress)

    def after_batch(self, t) -> None:
        done = (t.epoch - 1) * t.steps_per_epoch + t.step
        detail = f"epoch {t.epoch}/{t.last_epoch}, loss {t.loss:.3f}{self.accuracy}"
        self.show(TRAINING, done, t.last_epoch * t.steps_per_epoch, detail)

    def after_epoch(self, t) -> None:
        self.accuracy = f", val acc {t.result['row']['val_accuracy']:.1%}"
