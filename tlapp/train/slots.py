"""Share one machine between training jobs: a first-come, first-served line for a few slots.

    slots = TrainingSlots(capacity=1)          # one job trains at a time (the default)
    job = Job(config, slots=slots).start()     # waits for a slot, showing its place in line

A waiting job reports its place and an estimate (the time left of the jobs ahead, from their
own progress); it starts by itself when a slot frees, and a Stop while waiting leaves the line.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable
from typing import Protocol

import torch


class Estimable(Protocol):
    def remaining_seconds(self) -> float | None: ...


def default_capacity() -> int:
    """TLAPP_MAX_JOBS, else one: a training job already uses every CPU core, or the whole GPU."""
    value = os.environ.get("TLAPP_MAX_JOBS", "").strip()
    return max(1, int(value)) if value.isdigit() else 1


class TrainingSlots:
    def __init__(self, capacity: int | None = None):
        self.capacity = capacity or default_capacity()
        self._cond = threading.Condition()
        self._running: list[Estimable] = []
        self._waiting: list[Estimable] = []

    def acquire(
        self, job: Estimable, stop: threading.Event, on_wait: Callable[[int, float | None], None]
    ) -> bool:
        """Block until `job` may train (True) or `stop` is set while waiting (False)."""
        with self._cond:
            self._waiting.append(job)
            try:
                while True:
                    if stop.is_set():
                        return False
                    if len(self._running) < self.capacity and self._waiting[0] is job:
                        self._running.append(job)
                        return True
                    on_wait(self._waiting.index(job) + 1, self._estimate(job))
                    self._cond.wait(timeout=0.5)
            finally:
                self._waiting.remove(job)
                self._cond.notify_all()

    def release(self, job: Estimable) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)
            self._cond.notify_all()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # hand the memory to the next job

    def _estimate(self, job: Estimable) -> float | None:
        """Seconds until `job` gets a slot: slots free up as running jobs finish, and each job
        ahead in line is assumed to take as long as the longest running one."""
        running = [j.remaining_seconds() for j in self._running]
        if any(r is None for r in running):
            return None
        free = sorted(running + [0.0] * (self.capacity - len(running)))
        typical = max(running, default=None)
        place = self._waiting.index(job)
        for k in range(place + 1):
            start = heapq.heappop(free)
            if k == place:
                return start
            if typical is None:
                return None
            heapq.heappush(free, start + typical)
        return None
