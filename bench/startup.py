"""What a user waits for, whole processes timed from the outside (bench/speed.py --whole).

    rows = whole_process_rows(data, args)   # `tlapp train --freeze all` vs the tutorial loop,
                                            # first and second run, each a fresh process
    rows += startup_rows(data)              # tlapp --help, python app.py, Train → first point

Each figure is the wall time of a new process from its start (imports included) to its end, or
to the moment the user sees something: the page answering, the first progress of a run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def timed(cmd: list[str], env: dict | None = None) -> float:
    """Seconds from starting `cmd` to its exit (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def whole_process_rows(
    data: Path, args, child_command, run_flags
) -> list[tuple[str, float, float]]:
    """(what, plain seconds, tlapp seconds): head only, first run and second run, whole
    processes: the tutorial loop as a script (bench/speed.py's `child_command`), tlapp as
    `tlapp train` with the same settings (`run_flags`)."""
    plain = timed(child_command("plain", "head", args, data))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**ENV, "TLAPP_CACHE": str(Path(tmp) / "cache")}  # a first run: nothing cached yet
        train = [sys.executable, "-m", "tlapp", "train", str(data), *run_flags(args)]
        train += ["--weights", "none", "--freeze", "all"]
        first = timed([*train, "--out", str(Path(tmp) / "first")], env)
        second = timed([*train, "--out", str(Path(tmp) / "second")], env)
    return [
        ("head only, whole process, first run", plain, first),
        ("head only, whole process, second run", plain, second),
    ]


def startup_rows(data: Path, repeats: int = 3) -> list[tuple[str, float]]:
    """(what, median seconds over `repeats`): --help, the app's first page, Train → progress."""
    help_s = [timed([sys.executable, "-m", "tlapp", "--help"]) for _ in range(repeats)]
    page_s, seen = [], []
    for _ in range(repeats):
        page, stages = app_times(data)
        page_s.append(page)
        seen.append(stages)
    rows = [
        ("`tlapp --help`", statistics.median(help_s)),
        ("`python app.py` until the page answers", statistics.median(page_s)),
    ]
    for stage in PROGRESS:
        times = [s[stage] for s in seen if stage in s]
        if len(times) == len(seen):
            rows.append(
                (f"Train pressed → the page shows '{stage.strip()}'", statistics.median(times))
            )
    return rows


def app_times(data: Path) -> tuple[float, dict[str, float]]:
    """Seconds until a new `python app.py` answers; then, with the data loaded by path, from
    pressing Train (head only, the page's resnet18) to the first poll that shows each stage of
    the run (images decoded, BatchNorm statistics, embeddings, the head), until it ends."""
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        app, url = start_app(Path(home), ready=False)
        try:
            page = wait_for_page(url, app) - start
            # A visitor takes longer than the engine's import to choose data and settings:
            # Train is pressed once the app says it is ready to train.
            wait_until_ready(app)
            client = Client(url, verbose=False)
            client.predict(str(data), 0.2, 0.15, api_name="/load_folder")
            widgets = ("resnet18", "", "none", None, "", 5, 1, 224, 32, 0.001, False, "off", "0")
            pressed = time.perf_counter()
            client.predict(*widgets, api_name="/train")
            seen: dict[str, float] = {}
            while True:
                status = str(client.predict(api_name="/poll")[0])
                for stage in PROGRESS:
                    if stage in status and stage not in seen:
                        seen[stage] = time.perf_counter() - pressed
                if status.startswith(("**Finished", "**Failed", "**Stopped")):
                    return page, seen
                time.sleep(0.25)  # finer than the page's own timer (1 s), not a load of its own
        finally:
            app.terminate()
            app.wait(30)


PROGRESS = ("Decoding", "Estimating BatchNorm statistics", "Computing embeddings")


def start_app(
    home: Path, env: dict | None = None, ready: bool = True
) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port with its own TLAPP_HOME; with `ready`, once it says it
    is ready to train (its engine loaded), as an app started before a workshop is."""
    port = free_port()
    env = {**ENV, **(env or {}), "TLAPP_HOME": str(home), "GRADIO_SERVER_PORT": str(port)}
    app = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if ready:
        wait_until_ready(app)
    return app, f"http://127.0.0.1:{port}/"


def wait_until_ready(app: subprocess.Popen) -> None:
    """Read the app's lines until it says it is ready to train; then keep its pipe drained."""
    for line in app.stdout:
        if line.startswith("* Ready to train"):
            threading.Thread(target=app.stdout.read, daemon=True).start()
            return
    raise SystemExit(f"app.py ended ({app.wait()}) before it was ready")


def wait_for_page(url: str, app: subprocess.Popen) -> float:
    while app.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return time.perf_counter()
        except OSError:
            time.sleep(0.05)
    raise SystemExit("app.py ended before it answered")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
