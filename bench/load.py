"""A workshop's worth of visitors at once against one `python app.py`.

    python bench/load.py --visitors 30           # starts app.py itself, prints a table
    python bench/load.py --visitors 30 --url http://127.0.0.1:7860/   # against a running app

    python bench/load.py --visitors 30 --data upload   # each visitor uploads a zip of its own

Each simulated visitor (gradio_client, its own session) opens the page, takes the sample digits
(or, with `--data upload`, uploads a small dataset of its own: generated pictures, class names
unique to the visitor), trains head only (resnet18 at 64 px from random weights, as the hub is
offline here), polls until the run ends, classifies one image and downloads its run. All start
together. Reported: how many finished, p50 and p95 of the time from opening the page to the
downloaded run, how fast the page answers a fresh visitor during the load, the app's peak memory
(VmHWM from /proc) and the disk used under TLAPP_HOME and Gradio's temporary folder.

Isolation is checked, not assumed: every visitor's download must be a finished run of its own
session (no two visitors share a session or a run) and name only its data's classes; with
uploads, its prediction must name one of its own classes too.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from results import machine_line, write_results  # noqa: E402  (bench/results.py)
from startup import start_app  # noqa: E402  (bench/startup.py: app.py started, once ready)

COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}


def visitor_zip(index: int, dest: Path, per_class: int = 12) -> Path:
    """A zip of three class folders whose names carry the visitor's number."""
    rng = np.random.default_rng(index)
    path = dest / f"visitor-{index}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, rgb in COLOURS.items():
            for j in range(per_class):
                pixels = np.clip(rng.normal(rgb, 30, size=(48, 48, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, "PNG")
                zf.writestr(f"v{index}-{name}/{j:02d}.png", buffer.getvalue())
    return path


SAMPLE_CLASSES = {str(d) for d in range(10)}
SAMPLE_IMAGE = ROOT / "tlapp" / "sample" / "digits" / "3"


def visit(
    url: str, index: int, work: Path, data: str = "sample", model: str = "", timeout: float = 1800
) -> dict:
    """One visitor's whole session, from opening the page; returns its timings and what it saw.
    `model`: a timm name typed into the page's custom box (default: the list's resnet18)."""
    from gradio_client import Client, handle_file

    start = time.perf_counter()
    client = Client(url, verbose=False)
    if data == "sample":
        client.predict(0.2, 0.15, api_name="/use_sample")
        classes, image = SAMPLE_CLASSES, next(SAMPLE_IMAGE.iterdir())
    else:
        archive = visitor_zip(index, work)
        client.predict(handle_file(str(archive)), 0.2, 0.15, api_name="/load_upload")
        classes = {f"v{index}-{name}" for name in COLOURS}
        with zipfile.ZipFile(archive) as zf:
            image = work / f"visitor-{index}-probe.png"
            image.write_bytes(zf.read(zf.namelist()[0]))
    widgets = ("resnet18", model, "none", None, "", 5, 1, 64, 32, 0.001, False, "off", "0")
    client.predict(*widgets, api_name="/train")  # all 5 stages frozen: head only
    deadline = time.monotonic() + timeout
    while True:
        out = client.predict(api_name="/poll")
        status = str(out[0])
        if status.startswith(("**Finished**", "**Stopped**", "**Failed**", "**Diverged**")):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"visitor {index}: still '{status[:80]}'")
        time.sleep(1.0)
    trained = time.perf_counter()
    label, _ = client.predict(handle_file(str(image)), api_name="/predict")
    href, record = download(url, out[7])
    done = time.perf_counter()
    return {
        "visitor": index,
        "status": status.split("**")[1] if "**" in status else status,
        "seconds": done - start,
        "train_seconds": trained - start,
        "download": href,
        "own_prediction": label["label"] in classes,
        "own_run": set(record.get("classes", [])) == classes and record.get("status") == "done",
    }


def download(url: str, link) -> tuple[str, dict]:
    """GET the run the page's download link names, as a browser would; its run.json."""
    html = link.get("value", "") if isinstance(link, dict) else str(link or "")
    found = re.search(r'href="([^"]+)"', html)
    if not found:
        return "", {}
    with urllib.request.urlopen(urllib.parse.urljoin(url, found.group(1)), timeout=600) as r:
        archive = zipfile.ZipFile(io.BytesIO(r.read()))
    name = next((n for n in archive.namelist() if n.endswith("/run.json")), None)
    return found.group(1), json.loads(archive.read(name)) if name else {}


class PageProbe(threading.Thread):
    """A fresh visitor's view of the page every two seconds: how long GET / takes."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.times, self.done = url, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    response.read()
                self.times.append(time.perf_counter() - start)
            except OSError:
                self.times.append(float("inf"))
            self.done.wait(2.0)


def peak_rss_gb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def disk_gb(path: Path) -> float:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30
        if path.exists()
        else 0.0
    )


def load(url: str, visitors: int, work: Path, data: str) -> tuple[list, list, PageProbe]:
    probe = PageProbe(url)
    probe.start()
    results, errors = [], []
    with ThreadPoolExecutor(visitors) as pool:
        futures = [pool.submit(visit, url, i, work, data) for i in range(visitors)]
        for future in futures:
            try:
                results.append(future.result())
            except Exception as err:  # a visitor that failed is counted, not hidden
                errors.append(f"{type(err).__name__}: {err}")
    probe.done.set()
    probe.join()
    return results, errors, probe


def isolated(results: list[dict]) -> int:
    """Visitors whose download was a finished run with only their data's classes (and, for
    uploads, a prediction among them), from a session and a run no other visitor got."""
    sessions = [r["download"].split("/")[-2] if r["download"] else "" for r in results]
    shared = {s for s in sessions if not s or sessions.count(s) > 1}
    return sum(
        r["own_prediction"] and r["own_run"] and s not in shared for r, s in zip(results, sessions)
    )


def table(results, probe, visitors, peak, disk) -> str:
    """The measures as a Markdown table."""
    finished = [r for r in results if r["status"] == "Finished"]
    times = sorted(r["seconds"] for r in finished)
    page = [t for t in probe.times if t != float("inf")]

    def pct(values, q):
        return f"{np.percentile(values, q):.1f} s" if values else "—"

    rows = [
        ("visitors finished", f"{len(finished)} of {visitors}"),
        ("page opened → downloaded run, p50", pct(times, 50)),
        ("page opened → downloaded run, p95", pct(times, 95)),
        ("page opened → trained, p50", pct(sorted(r["train_seconds"] for r in finished), 50)),
        (
            "page for a fresh visitor, median / p95 / max",
            f"{statistics.median(page):.2f} s / {np.percentile(page, 95):.2f} s / {max(page):.2f} s"
            if page
            else "—",
        ),
        ("page requests failed", str(len(probe.times) - len(page))),
        ("app peak memory (VmHWM)", f"{peak:.2f} GB" if peak else "not measured"),
        (
            "disk: TLAPP_HOME + Gradio's temp, per visitor",
            f"{disk * 1024 / visitors:.0f} MB ({disk:.2f} GB in all)" if disk else "not measured",
        ),
        ("saw only their own session, run and classes", f"{isolated(results)} of {visitors}"),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--visitors", type=int, default=30)
    p.add_argument("--data", choices=["sample", "upload"], default="sample")
    p.add_argument("--url", default="", help="an app already running (default: start app.py)")
    p.add_argument("--json", default="", help="write the raw results here (bench/results/…)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlapp-load-") as tmp:
        work, home, temp = Path(tmp) / "visitors", Path(tmp) / "home", Path(tmp) / "gradio"
        work.mkdir()
        app, url = (None, args.url) if args.url else start_app(home, {"GRADIO_TEMP_DIR": str(temp)})
        try:
            results, errors, probe = load(url, args.visitors, work, args.data)
            peak = peak_rss_gb(app.pid) if app else None
            disk = disk_gb(home) + disk_gb(temp) if app else None
        finally:
            if app:
                app.terminate()
                app.wait(30)
    what = "the sample digits" if args.data == "sample" else "an upload of their own"
    measures = table(results, probe, args.visitors, peak, disk)
    print(f"{args.visitors} visitors on {what}; {machine_line()}\n\n{measures}")
    print("\n".join(f"- failed: {e}" for e in errors))
    if args.json:
        raw = {"visitors": results, "errors": errors, "page_seconds": probe.times}
        raw.update(peak_gb=peak, disk_gb=disk, data=args.data, visitors_asked=args.visitors)
        write_results(args.json, raw, {"load": measures})


if __name__ == "__main__":
    main()
