"""The page in a real browser: Debian's Chromium driven by Playwright.

Picks a generated folder through the folder input, trains a tiny model, stops, predicts, and
saves a screenshot of the trained page under test-artifacts/."""

from conftest import ARTIFACTS, needs_chromium, wait_for, write_classes

from tlapp.data import load_dataset

pytestmark = needs_chromium()


def table_rows(page, elem_id: str, columns: list[str]) -> dict[str, list[str]]:
    """The cells of a Gradio Dataframe as the user sees them, keyed by the first column."""
    lines = [line.strip() for line in page.inner_text(f"#{elem_id}").splitlines() if line.strip()]
    start = lines.index(columns[0])
    assert lines[start : start + len(columns)] == columns
    cells = lines[start + len(columns) :]
    rows = [cells[i : i + len(columns)] for i in range(0, len(cells), len(columns))]
    return {row[0]: row[1:] for row in rows}


def test_folder_pick_train_stop_and_predict(page, tmp_path):
    folder = write_classes(
        tmp_path / "shapes",
        per_class=10,
        classes={"circle": (200, 40, 40), "square": (40, 170, 60), "triangle": (40, 60, 200)},
    )
    (folder / "circle" / "notes.txt").write_text("not an image")  # listed as skipped
    on_disk = load_dataset(folder)

    page.set_input_files("#upload input[type=file]", str(folder))
    wait_for(page, "document.querySelector('#data-summary').innerText.includes('images in')")
    expected = on_disk.report().astype(str)
    rows = table_rows(page, "class-table", list(expected.columns))
    expected = expected.set_index("class")
    assert set(rows) == set(expected.index)
    for name, values in rows.items():
        assert values == expected.loc[name].tolist(), name

    page.click("text=Advanced settings")  # every setting but the model is in this one panel
    # the note under the freeze slider is written when the page opens (it needs timm)
    page.wait_for_selector("#freeze-note", state="attached")
    wait_for(page, "document.querySelector('#freeze-note').innerText.includes('will train')", 60)
    page.fill("#custom-model input, #custom-model textarea", "test_resnet")
    page.wait_for_selector("#epochs input[type=number]", state="visible")
    page.fill("#epochs input[type=number]", "80")
    page.press("#epochs input[type=number]", "Enter")
    wait_for(page, "document.querySelector('#epochs input[type=range]').value === '80'", 10)
    page.click("#train-btn")
    # the per-step loss curve (in the panel under the loop) has two points or more, and the
    # matrix names every class
    page.click("#run-details >> text=More about this run")
    wait_for(
        page, "document.querySelectorAll('#loss-plot [aria-roledescription=point]').length >= 2"
    )
    wait_for(
        page,
        """(() => {
        const text = document.querySelector('#confusion-matrix').innerText;
        return ['circle', 'square', 'triangle'].every(name => text.includes(name));
    })()""",
    )
    wait_for(
        page, "document.querySelectorAll('#accuracy-plot [aria-roledescription=point]').length >= 4"
    )
    assert "/80" in page.inner_text("#status")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "trained-page.png"), full_page=True)

    page.click("#stop-btn")
    wait_for(page, "document.querySelector('#status').innerText.includes('Stopped')", timeout=30)
    assert "Stopped by the user" in page.inner_text("#status")
    # the headline is the kept model's score on the held-back test images, with its interval
    wait_for(page, "document.querySelector('#status').innerText.includes('Accuracy on new images')")
    status = page.inner_text("#status")
    assert "95% interval" in status and "times in 6 on test images" in status
    page.locator("#status").screenshot(path=str(ARTIFACTS / "stopped-status.png"))
    page.wait_for_selector("#download-run", state="visible", timeout=10_000)

    # a confusion-matrix cell opens a gallery of exactly its images; an image shows its heat map
    # (the first cell with images in it: how far training got before the stop varies by machine)
    at = page.evaluate(
        """[...document.querySelectorAll('#confusion-matrix td[data-cell]')]
        .find(td => parseInt(td.innerText) > 0).dataset.cell"""
    )
    true_class = ["circle", "square", "triangle"][int(at.split(",")[0])]
    cell = page.locator(f"#confusion-matrix td[data-cell='{at}']")
    expected = int(cell.inner_text())
    cell.click()
    wait_for(page, "document.querySelector('#gallery-title').innerText.includes('true class')", 30)
    wait_for(page, f"document.querySelectorAll('#cell-gallery img').length === {expected}", 30)
    images = "image" if expected == 1 else "images"
    assert f"{expected} {images} of true class {true_class}" in page.inner_text("#gallery-title")
    page.locator("#cell-gallery button img").first.click()
    wait_for(page, "document.querySelector('#explain-image img') !== null", 30)
    assert f"labelled {true_class}" in page.inner_text("#picked")
    page.screenshot(path=str(ARTIFACTS / "where-is-it-wrong.png"), full_page=True)

    image = next((folder / "circle").iterdir())
    page.click("#later-steps button[role=tab]:has-text('Try it')")
    page.set_input_files("#predict-image input[type=file]", str(image))
    wait_for(
        page,
        "(document.querySelector('#predict-result') || {innerText: ''}).innerText.match(/circle|square|triangle/)",
    )
    text = page.inner_text("#predict-result")
    assert "%" in text


def test_a_dropped_folder_keeps_its_labels(page, tmp_path):
    """A real directory drag-and-drop (Chromium's own drag events through the DevTools protocol):
    the page walks the dropped folder and the server sees the same dataset as on disk."""
    folder = write_classes(tmp_path / "dropped", per_class=6)
    write_classes(folder / "extra", per_class=2, classes={"inner": (9, 9, 9)})  # nested images
    on_disk = load_dataset(folder)
    box = page.locator("#upload").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    data = {"items": [], "files": [str(folder)], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    wait_for(page, "document.querySelector('#data-summary').innerText.includes('images in')")
    expected = on_disk.report().astype(str)
    rows = table_rows(page, "class-table", list(expected.columns))
    assert rows == {r[0]: r[1:] for r in expected.values.tolist()}
    assert f"{len(on_disk.samples)} images in {len(on_disk.classes)} classes" in page.inner_text(
        "#data-summary"
    )
