"""Shared fixtures: datasets generated on the fly, and a guarantee that nothing is downloaded."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["TLAPP_CACHE"] = __import__("tempfile").mkdtemp(prefix="tlapp-test-cache-")

import io
import random
import re
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLORS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}


def colour_image(rgb, size=48, seed=0) -> Image.Image:
    """A learnable picture: a noisy field of one colour with a random grey square on it."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(rgb, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
    x, y = rng.integers(0, size // 2, 2)
    pixels[y : y + size // 3, x : x + size // 3] = rng.integers(60, 200)
    return Image.fromarray(pixels, "RGB")


def write_classes(root: Path, per_class: int = 12, classes=COLORS, fmt="png", seed=0) -> Path:
    for c, rgb in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # A stable seed: str hashes differ between processes, so the data would too.
            stable = zlib.crc32(f"{c}-{i}-{seed}".encode())
            colour_image(rgb, seed=stable).save(root / c / f"{c}_{i:02d}.{fmt}")
    return root


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """Three colour classes, 12 images each, laid out as <class>/<image>."""
    return write_classes(tmp_path / "colours")


@pytest.fixture
def split_folder(tmp_path) -> Path:
    """train/<class>, val/<class> and test/<class>, already split."""
    root = tmp_path / "split"
    write_classes(root / "train", 8, seed=1)
    write_classes(root / "val", 3, seed=2)
    write_classes(root / "test", 2, seed=3)
    return root


def zip_folder(folder: Path, zip_path: Path, wrapper: str | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                name = f.relative_to(folder).as_posix()
                zf.write(f, f"{wrapper}/{name}" if wrapper else name)
    return zip_path


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(settings):
    """Start the app on a free loopback port; returns (url, demo). Close with demo.close()."""
    from tlapp.web import build_ui, launch_kwargs

    demo = build_ui(settings)
    port = free_port()
    kwargs = {**launch_kwargs(settings), "server_name": "127.0.0.1", "server_port": port}
    demo.queue().launch(prevent_thread_lock=True, quiet=True, **kwargs)
    return f"http://127.0.0.1:{port}/", demo


def download_run(url: str, link) -> zipfile.ZipFile:
    """GET the run a page's download link names (as a browser would) and open the zip.
    `link`: the link's HTML, or the component update that carries it."""
    link = link.get("value", "") if isinstance(link, dict) else link
    href = re.search(r'href="([^"]+)"', link).group(1)
    with urllib.request.urlopen(urllib.parse.urljoin(url, href), timeout=60) as response:
        assert response.headers["Content-Type"] == "application/zip"
        return zipfile.ZipFile(io.BytesIO(response.read()))


def start_training(
    client,
    epochs=3,
    augment=False,
    model="test_resnet",
    freeze=1,
    img_size=48,
    batch_size=8,
    lr=0.003,
    balance="off",
    time_budget="0",
):
    """Press Train through the app's API (arguments in the order of the page's widgets)."""
    return client.predict(
        "resnet18",
        model,
        "none",
        None,
        "",
        freeze,
        epochs,
        img_size,
        batch_size,
        lr,
        augment,
        balance,
        time_budget,
        api_name="/train",
    )


def poll_until(client, *words, timeout=180):
    """Poll the page until its status starts with one of `words`; returns the poll outputs."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        out = client.predict(api_name="/poll")
        if any(str(out[0]).startswith(f"**{w}**") for w in words):
            return out
        time.sleep(0.3)
    raise AssertionError(f"the status never became {words}: {out[0]}")


class StopAt:
    """Presses Stop (or, as a closed page does, finish-the-epoch-and-stop) at a fixed point."""

    def __init__(self, epoch: int, event: str = "after_batch", finish: bool = False):
        self.job, self.epoch, self.finish, self.steps_after = None, epoch, finish, None
        setattr(self, event, self.press)

    def press(self, trainer):
        if self.steps_after is not None:
            self.steps_after += 1
        elif trainer.epoch == self.epoch:
            self.steps_after = 0
            (self.job.finish_epoch_and_stop if self.finish else self.job.stop)()


# ----------------------------------------------------------------------------- the browser
CHROMIUM = os.environ.get("TLAPP_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a webcam that films a test pattern, allowed without asking: the webcam capture's test
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def needs_chromium() -> list:
    """A browser test module's pytestmark: skipped without Chromium, except in CI, which must
    never pass without the browser suite (a newcomer's machine may lack Chromium)."""
    if Path(CHROMIUM).exists():
        return []
    if os.environ.get("TLAPP_REQUIRE_BROWSER") == "1":
        raise RuntimeError(
            f"The browser tests need Chromium at {CHROMIUM} (apt-get install chromium)."
        )
    return [pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")]


@pytest.fixture
def page(tmp_path):
    """A fresh app and a Chromium tab on it, 1366x900, once the page has loaded."""
    from playwright.sync_api import sync_playwright

    from tlapp.web import AppSettings

    settings = AppSettings(home=tmp_path / "home", allow_local_paths=False)
    url, demo = serve(settings)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1366, "height": 900})
        tab.set_default_timeout(60_000)
        tab.goto(url)
        tab.wait_for_selector("#train-btn")
        yield tab
        browser.close()
    demo.close()


def wait_for(page, js: str, timeout: float = 120):
    page.wait_for_function(js, timeout=timeout * 1000)


def wait_for_text(page, selector: str, text: str, timeout: float = 120, present: bool = True):
    """Until the element's text holds `text` (or, with present=False, no longer does); an
    element not on the page yet holds no text."""
    js = f"(document.querySelector({selector!r}) || {{innerText: ''}}).innerText.includes({text!r})"
    wait_for(page, js if present else f"!{js}", timeout)
