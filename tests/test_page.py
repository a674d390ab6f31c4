"""The page as a newcomer sees it, in a real browser: one screen for the loop, nothing shown
empty, no serious accessibility violation (axe-core) in any state, usable on a phone and a wide
screen, and classes made on the page that train and predict.

Each state's screenshot is written under test-artifacts/ for review."""

import pytest
from conftest import ARTIFACTS, needs_chromium, wait_for, wait_for_text, write_classes

pytestmark = needs_chromium()

SCREEN = {"width": 1366, "height": 900}
SHAPES = {"circle": (200, 40, 40), "square": (40, 170, 60), "triangle": (40, 60, 200)}
# Shown only once they have content: before any data, none of them may be on the page.
FILLED_LATER = [
    "#live-result",
    "#accuracy-plot",
    "#confusion-matrix",
    "#loss-plot",
    "#class-table",
    "#skipped-table",
    "#health-table",
    "#run-details",
    "#after-training",
    "#cell-gallery",
    "#explain-image",
    "#predict-result",
    "#predict-table",
]


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}: {v['nodes'][0]['target']})"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def check_state(page, name: str) -> None:
    """Screenshot and axe-core once no event is in progress: the state, not a transition."""
    wait_for(
        page,
        "[...document.querySelectorAll('[data-testid=status-tracker]')]"
        ".every(tracker => tracker.classList.contains('hide'))",
        60,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)
    assert serious_violations(page) == [], name


def page_height(page) -> int:
    return page.evaluate("document.documentElement.scrollHeight")


def bottom(page, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box["y"] + box["height"]


def advanced(page, model="test_resnet", epochs=80, img_size=48) -> None:
    """Open the one advanced panel, set a tiny model and run, and close it again."""
    page.click("#advanced >> text=Advanced settings")
    page.fill("#custom-model input, #custom-model textarea", model)
    for box, value in (("#epochs", epochs), ("#img-size", img_size)):
        page.fill(f"{box} input[type=number]", str(value))
        page.press(f"{box} input[type=number]", "Enter")
        wait_for(page, f"document.querySelector('{box} input[type=range]').value === '{value}'")
    page.click("#advanced >> text=Advanced settings")


def test_the_loop_fits_one_screen_and_every_state_passes_axe(page, tmp_path):
    assert page.viewport_size == SCREEN
    for selector in FILLED_LATER:
        assert not page.locator(selector).is_visible(), f"{selector} shown empty"
    assert page_height(page) <= 2 * SCREEN["height"]
    check_state(page, "empty")

    folder = write_classes(tmp_path / "shapes", per_class=10, classes=SHAPES)
    page.set_input_files("#upload input[type=file]", str(folder))
    wait_for(page, "document.querySelector('#data-summary').innerText.includes('Ready to train')")
    # the instant baseline runs by itself: its matrix appears without pressing Train
    page.wait_for_selector("#confusion-matrix td[data-cell]")
    assert not page.locator("#health-table").is_visible()  # the data check found nothing
    assert page_height(page) <= 2 * SCREEN["height"]
    check_state(page, "data-loaded")

    advanced(page)
    page.click("#train-btn")
    wait_for(page, "document.querySelector('#status').innerText.startsWith('Training')")
    wait_for(
        page, "document.querySelectorAll('#accuracy-plot [aria-roledescription=point]').length >= 4"
    )
    assert page.evaluate("window.scrollY") == 0
    for selector in ("#status", "#metrics-summary", "#accuracy-plot", "#confusion-matrix"):
        assert bottom(page, selector) <= SCREEN["height"], f"{selector} is below the first screen"
    check_state(page, "training")

    page.click("#stop-btn")
    wait_for(page, "document.querySelector('#status').innerText.includes('Accuracy on new images')")
    page.wait_for_selector("#after-training", state="visible")
    check_state(page, "finished")


@pytest.mark.parametrize("width", [390, 1920])
def test_the_page_works_on_a_phone_and_a_wide_screen(page, tmp_path, width):
    page.set_viewport_size({"width": width, "height": 900})
    folder = write_classes(tmp_path / "shapes", per_class=6, classes=SHAPES)
    page.set_input_files("#upload input[type=file]", str(folder))
    page.wait_for_selector("#confusion-matrix td[data-cell]")
    # nothing wider than the screen: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for selector in ("#upload", "#train-btn", "#confusion-matrix"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
    page.screenshot(path=str(ARTIFACTS / f"page-{width}px.png"), full_page=True)
    assert serious_violations(page) == []


def new_class(page, name: str, card: int) -> None:
    """Name a class on the page; its card is drawn `card`-th (cards are in name order)."""
    page.fill("#class-name input, #class-name textarea", name)
    page.click("#class-add")
    wait_for_text(page, f"#class-title-{card}", f"{name} · 0 images")


def drop_on_card(page, card: int, name: str, images: list) -> None:
    page.set_input_files(f"#class-drop-{card} input[type=file]", [str(p) for p in images])
    wait_for_text(page, f"#class-title-{card}", f"{name} · {len(images)} images")
    wait_for(
        page, f"document.querySelectorAll('#class-thumbs-{card} img').length === {len(images)}"
    )


def test_classes_made_on_the_page_train_and_predict(page, tmp_path):
    """The workshop path: no folder, two classes named on the page and images dropped on each
    one's own card."""
    source = write_classes(tmp_path / "made", per_class=8, classes={"red": (200, 40, 40)})
    write_classes(source, per_class=8, classes={"blue": (40, 60, 200)}, seed=3)
    page.click("#data-tabs button[role=tab]:has-text('Make classes here')")
    new_class(page, "red", 0)
    drop_on_card(page, 0, "red", sorted((source / "red").iterdir()))
    wait_for_text(page, "#data-summary", "Add two classes")
    new_class(page, "sky", 1)
    drop_on_card(page, 1, "sky", sorted((source / "blue").iterdir()))
    wait_for_text(page, "#data-summary", "16 images in 2 classes")
    assert page.inner_text("#class-title-0").startswith("red · 8 images")  # untouched

    # rename a class on its card; a third one made by mistake is deleted from its card
    page.fill("#class-rename-1 input, #class-rename-1 textarea", "blue")
    page.click("#class-rename-btn-1")
    wait_for_text(page, "#class-title-0", "blue · 8 images")  # now first in name order
    new_class(page, "oops_by_mistake", 1)  # shown as typed, not in italics
    page.click("#class-delete-1")
    wait_for(page, "!document.querySelector('#class-card-2')")
    titles = page.inner_text("#class-cards")
    assert "oops" not in titles and "sky" not in titles and "red · 8 images" in titles
    check_state(page, "classes-made-here")

    advanced(page, epochs=2)
    page.click("#train-btn")
    wait_for(page, "document.querySelector('#status').innerText.startsWith('Finished')", 180)
    table = page.inner_text("#confusion-matrix")
    assert "blue" in table and "red" in table and "sky" not in table
    page.click("#later-steps button[role=tab]:has-text('Try it')")
    page.set_input_files("#predict-image input[type=file]", str(next((source / "red").iterdir())))
    wait_for(
        page,
        "(document.querySelector('#predict-result') || {innerText: ''}).innerText.match(/red|blue/)",
    )

    # a name already taken is refused in a sentence, and both classes stay as they were
    page.fill("#class-rename-1 input, #class-rename-1 textarea", "blue")
    page.click("#class-rename-btn-1")
    page.wait_for_selector("text=There is already a class 'blue'")
    assert page.inner_text("#class-title-0").startswith("blue · 8 images")
    assert page.inner_text("#class-title-1").startswith("red · 8 images")


def test_a_class_takes_its_images_from_the_webcam(page):
    """Capture from the webcam on a class's card (Chromium films a test pattern): the class
    counts it and shows its thumbnail."""
    page.click("#data-tabs button[role=tab]:has-text('Make classes here')")
    new_class(page, "wave", 0)
    capture(page, 0)
    wait_for_text(page, "#class-title-0", "wave · 1 image")
    wait_for(page, "document.querySelectorAll('#class-thumbs-0 img').length === 1")
    capture(page, 0)  # with the card drawn again, its webcam box is a new one
    wait_for_text(page, "#class-title-0", "wave · 2 images")


def capture(page, card: int) -> None:
    """Open the card's webcam and take a picture once the video shows a frame, as a person
    would: before that the capture has nothing to draw."""
    page.click(f"#class-webcam-{card} >> text=Click to Access Webcam")
    wait_for(page, f"document.querySelector('#class-webcam-{card} video').readyState >= 2")
    page.click(f"#class-webcam-{card} button[aria-label='capture photo']")
