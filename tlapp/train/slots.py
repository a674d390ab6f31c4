"""Share one machine between training jobs: first-come, first-served lines for a few slots.

    slots = TrainingSlots(capacity=1)          # one job trains at a time (the default)
    job = Job(config, slots=slots).start()     # waits for a slot, showing its place in line

A waiting job reports its place and an estimate (the time left of the jobs ahead, from their
own progress); it starts by itself when a slot frees, and a Stop while waiting leaves the line.

Short jobs (head only or prototypes: an embedding pass and a fit of seconds) have a line and a
slot of their own, so that they never wait behind a long fine-tune: in a workshop, thirty
head-only runs go through one after another while a full fine-tune holds the main slot.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable
from typing import Protocol


class Estimable(Protocol):
    short: bool  # head only: the express line

    def remaining_seconds(self) -> float | None: ...


def default_capacity() -> int:
    """TLAPP_MAX_JOBS, else one: a training job already uses every CPU core, or the whole GPU."""
    value = os.environ.get("TLAPP_MAX_JOBS", "").strip()
    return max(1, int(value)) if value.isdigit() else 1


class TrainingSlots:
    def __init__(self, capacity: int | None = None, express: int = 1):
        self.capacity = capacity or default_capacity()
        self._cond = threading.Condition()
        # Two lanes, each its own line and slots: "short" (head only) and "long" (fine-tuning).
        self._room = {False: self.capacity, True: express}
        self._running: dict[bool, list[Estimable]] = {False: [], True: []}
        self._waiting: dict[bool, list[Estimable]] = {False: [], True: []}

    def acquire(
        self, job: Estimable, stop: threading.Event, on_wait: Callable[[int, float | None], None]
    ) -> bool:
        """Block until `job` may train (True) or `stop` is set while waiting (False)."""
        lane = job.short
        waiting, running = self._waiting[lane], self._running[lane]
        with self._cond:
            waiting.append(job)
            try:
                while True:
                    if stop.is_set():
                        return False
                    if len(running) < self._room[lane] and waiting[0] is job:
                        running.append(job)
                        return True
                    on_wait(waiting.index(job) + 1, self._estimate(job, lane))
                    self._cond.wait(timeout=0.5)
            finally:
                waiting.remove(job)
                self._cond.notify_all()

    def release(self, job: Estimable) -> None:
        with self._cond:
            for running in self._running.values():
                if job in running:
                    running.remove(job)
            self._cond.notify_all()
        # Imported here: the page builds its slots before torch has loaded (a job that trained
        # has loaded it by now).
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # hand the memory to the next job

    def _estimate(self, job: Estimable, lane: bool) -> float | None:
        """Seconds until `job` gets a slot: slots free up as running jobs finish, and each job
        ahead in line is assumed to take as long as the longest running one."""
        running = [j.remaining_seconds() for j in self._running[lane]]
        if any(r is None for r in running):
            return None
        free = sorted(running + [0.0] * (self._room[lane] - len(running)))
        typical = max(running, default=None)
        place = self._waiting[lane].index(job)
        for k in range(place + 1):
            start = heapq.heappop(free)
            if k == place:
                return start
            if typical is None:
                return None
            heapq.heappush(free, start + typical)
        return None
