"""Seeing where the model is wrong: cell galleries, heat maps, data health, corrections,
calibration."""

import hashlib
import re

import numpy as np
import pytest
import timm
import torch
from conftest import colour_image, poll_until, serve, start_training, write_classes, zip_folder
from gradio_client import Client, handle_file
from PIL import Image

from tlapp import metrics
from tlapp.config import make_config
from tlapp.data import Corrections, load_dataset
from tlapp.explain import grad_cam, heat_map
from tlapp.health import check_health
from tlapp.predict import Predictor
from tlapp.train import Job
from tlapp.views import cell_images, top_losses
from tlapp.web import AppSettings

CLASSES = ["cat", "dog", "fox"]


def crafted_predictions():
    """Six images whose true and predicted classes are known."""
    targets = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.1, 0.8],
            [0.3, 0.3, 0.4],
        ]
    )
    paths = [f"/data/{i}.png" for i in range(6)]
    return metrics.prediction_table(paths, probs, targets, CLASSES), probs, targets


def test_a_cell_gallery_holds_exactly_that_cells_images():
    table, probs, targets = crafted_predictions()
    cm = metrics.confusion_matrix(targets, probs.argmax(1), 3)
    for i, true in enumerate(CLASSES):
        for j, predicted in enumerate(CLASSES):
            rows = cell_images(table, true, predicted)
            assert len(rows) == cm[i, j]
            assert (rows["true"] == true).all() and (rows["predicted"] == predicted).all()
    assert cell_images(table, "cat", "dog")["path"].tolist() == ["/data/1.png"]
    assert cell_images(table, "dog", "cat")["confidence"].tolist() == [pytest.approx(0.6)]
    worst = top_losses(table, k=2)
    assert worst["path"].tolist() == ["/data/1.png", "/data/3.png"]  # p(true) 0.2, then 0.3
    assert list(worst["loss"]) == sorted(worst["loss"], reverse=True)


def test_calibration_error_is_small_when_confidence_matches_accuracy():
    rng = np.random.default_rng(0)
    n = 4000
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < confidence
    targets = np.zeros(n, dtype=int)
    probs = np.stack(
        [
            np.where(correct, confidence, 1 - confidence),
            np.where(correct, 1 - confidence, confidence),
        ],
        axis=1,
    )
    ece, table = metrics.calibration(probs, targets)
    assert ece < 0.03 and table["count"].sum() == n
    overconfident = np.stack([np.full(n, 0.99), np.full(n, 0.01)], axis=1)
    targets_half = (rng.uniform(size=n) < 0.5).astype(int)
    assert metrics.calibration(overconfident, targets_half)[0] > 0.4


def patch_image(rng, at=None, size=64):
    pixels = rng.normal(60, 15, (size, size, 3)).clip(0, 255)
    if at:
        x, y = at
        pixels[y : y + 14, x : x + 14] = 250
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def patch_data(tmp_path_factory):
    """'patch': a bright square somewhere on noise; 'plain': noise alone."""
    root = tmp_path_factory.mktemp("patches") / "d"
    rng = np.random.default_rng(0)
    for c in ("patch", "plain"):
        (root / c).mkdir(parents=True)
        for i in range(30):
            at = tuple(int(v) for v in rng.integers(0, 50, 2)) if c == "patch" else None
            patch_image(rng, at).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("model, method", [("test_resnet", "Grad-CAM"), ("test_vit", "occlusion")])
def test_the_heat_map_peaks_on_the_patch_that_decides_the_class(
    patch_data, tmp_path, model, method
):
    config = make_config(
        data=str(patch_data),
        model=model,
        weights="none",
        img_size=64,
        batch_size=8,
        epochs=6,
        lr=2e-3,
        augment=False,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    assert Job(config).start().wait(240).status == "done"
    predictor = Predictor(tmp_path / "run")
    rng = np.random.default_rng(1)
    hits = 0
    corners = [(2, 2), (46, 2), (2, 46), (46, 46)]
    for at in corners * 2:
        picture = patch_image(rng, at)
        heat, used = heat_map(
            predictor.model, predictor.transform(picture), predictor.classes.index("patch")
        )
        assert used == method
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        h, w = heat.shape
        hits += (y < h / 2) == (at[1] < 32) and (x < w / 2) == (at[0] < 32)  # the right quadrant
    assert hits >= 6, hits
    overlay, _ = predictor.explain(patch_image(rng, (2, 2)))
    assert overlay.size == (320, 320)  # a 64-px input, shown larger


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("test_resnet", {}, (64, 96)),  # channels first
        ("test_mambaout", {}, (64, 96)),  # channels last: timm's output_fmt is NHWC
        # a Swin with one block a stage: forward_features gives [1, 7, 7, C] at 224 pixels
        (
            "swin_tiny_patch4_window7_224",
            dict(depths=(1, 1, 1, 1), embed_dim=32, num_heads=(1, 2, 4, 8)),
            (224, 224),
        ),
    ],
)
def test_grad_cam_maps_the_image_whatever_the_channel_order(name, kwargs, size):
    """Rows and columns of the image (at the feature map's stride of 32), never rows x channels."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=3, **kwargs)
    heat, method = heat_map(model, torch.randn(3, *size), 1)
    assert method == "Grad-CAM"
    assert heat.shape == (size[0] // 32, size[1] // 32)


class ChannelsFirst(torch.nn.Module):
    """A channels-last timm model that hands out its features channels first."""

    output_fmt = "NCHW"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward_features(self, x):
        return self.inner.forward_features(x).permute(0, 3, 1, 2)

    def forward_head(self, x, pre_logits=False):
        return self.inner.forward_head(x.permute(0, 2, 3, 1), pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_grad_cam_is_the_same_map_in_either_channel_order():
    """The same network gives the same map whether its features come channels last (as timm
    says, or as guessed when it does not say) or channels first."""
    torch.manual_seed(0)
    model = timm.create_model("test_mambaout", pretrained=False, num_classes=3).eval()
    pixels = torch.randn(3, 64, 96)
    last = grad_cam(model, pixels, 2)
    first = grad_cam(ChannelsFirst(model), pixels, 2)
    assert last.shape == first.shape == (2, 3) and last.max() > 0
    np.testing.assert_allclose(last, first, rtol=1e-4, atol=1e-6)
    del model.output_fmt  # a model that does not say: the feature count on the last axis tells
    np.testing.assert_allclose(grad_cam(model, pixels, 2), last, rtol=1e-4, atol=1e-6)


def test_duplicates_and_leakage_are_found(tmp_path):
    root = write_classes(tmp_path / "d", per_class=10)
    red = sorted((root / "red").iterdir())
    (root / "red" / "copy.png").write_bytes(red[0].read_bytes())  # exact duplicate
    Image.open(red[1]).resize((60, 60)).save(root / "red" / "bigger.png")  # near duplicate
    Image.open(red[2]).save(root / "blue" / "mislabelled.png")  # same picture, another class
    (root / "green" / "tiny").mkdir()
    colour_image((40, 170, 60), size=20).save(root / "green" / "tiny" / "t.png")
    colour_image((40, 170, 60)).convert("L").save(root / "green" / "grey.png")
    ds = load_dataset(root, val_fraction=0.5, seed=3)
    findings = check_health(ds)
    kinds = findings["finding"].tolist()
    paths = {k: [set(p) for p in findings[findings["finding"] == k]["paths"]] for k in set(kinds)}
    assert {str(red[0]), str(root / "red" / "copy.png")} in paths["exact duplicates"]
    assert any(
        {str(red[1]), str(root / "red" / "bigger.png")} <= g for g in paths["near duplicates"]
    )
    clash = findings[findings["detail"].str.contains("labelled differently")]
    assert len(clash) == 1 and "blue" in clash["detail"].iloc[0]
    assert "leakage" not in kinds  # the app's own split keeps copies on one side
    assert paths["very small images"] == [{str(root / "green" / "tiny" / "t.png")}]
    assert paths["grey among colour"] == [{str(root / "green" / "grey.png")}]


def test_a_copy_across_a_given_split_is_leakage(split_folder):
    first = sorted((split_folder / "train" / "red").iterdir())[0]
    copy = split_folder / "val" / "red" / "copy.png"
    copy.write_bytes(first.read_bytes())
    findings = check_health(load_dataset(split_folder))
    leaks = findings[findings["finding"] == "leakage"]
    assert len(leaks) == 1 and set(leaks["paths"].iloc[0]) == {str(first), str(copy)}
    assert "train, val" in leaks["detail"].iloc[0]


def test_imbalance_gets_a_suggestion(tmp_path):
    root = write_classes(tmp_path / "d", per_class=20, classes={"many": (200, 40, 40)})
    write_classes(root, per_class=3, classes={"few": (40, 40, 200)})
    findings = check_health(load_dataset(root))
    row = findings[findings["finding"] == "class imbalance"].iloc[0]
    assert "'few'" in row["detail"] and "Balance classes" in row["detail"]


def digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_corrections_change_the_next_run_and_never_touch_the_originals(class_folder, tmp_path):
    before = digest(class_folder)
    ds = load_dataset(class_folder)
    corrections = Corrections.load(tmp_path / "fixes.json")
    red = sorted(ds.samples[ds.samples["label"] == "red"]["path"])
    corrections.move(ds.relative(red[0]), "blue")
    corrections.drop(ds.relative(red[1]))
    again = Corrections.load(tmp_path / "fixes.json")
    assert len(again) == 2
    fixed = ds.corrected(again)
    assert len(fixed.samples) == len(ds.samples) - 1
    assert fixed.samples.set_index("path").loc[red[0], "label"] == "blue"
    assert red[1] not in set(fixed.samples["path"]) and red[1] in set(fixed.skipped["path"])
    config = make_config(
        data=str(class_folder),
        model="test_resnet",
        weights="none",
        img_size=48,
        batch_size=8,
        epochs=1,
        out=str(tmp_path / "run"),
        corrections=str(tmp_path / "fixes.json"),
    )
    state = Job(config).start().wait(120)
    assert state.status == "done"
    from tlapp import runs

    info = runs.read_config(tmp_path / "run")
    assert info["config"]["corrections"].endswith("fixes.json")
    assert sum(info["dataset"]["images"].values()) == 35  # train, val and the test share
    assert digest(class_folder) == before  # not a byte of the user's images changed
    assert not list(class_folder.rglob("*.json"))


def matrix_counts(html: str) -> dict[tuple[int, int], int]:
    return {
        (int(i), int(j)): int(n)
        for i, j, n in re.findall(r"data-cell='(\d+),(\d+)'[^>]*>(\d+)</td>", html)
    }


def test_every_confusion_cell_opens_its_images_in_the_app(tmp_path, class_folder):
    url, demo = serve(AppSettings(home=tmp_path / "home", allow_local_paths=False))
    try:
        client = Client(url, verbose=False)
        archive = zip_folder(class_folder, tmp_path / "c.zip")
        client.predict(handle_file(str(archive)), 0.4, 0.15, api_name="/load_upload")
        start_training(client, epochs=2, augment=False)
        out = poll_until(client, "Finished")
        counts = matrix_counts(out[4])
        assert len(counts) == 9 and sum(counts.values()) == 15  # 5 validation images a class
        for (i, j), n in counts.items():
            title, gallery = client.predict(f"{i},{j},1", api_name="/show_cell")
            assert len(gallery) == n, (i, j)
            assert f"**{n} images**" in title
        title, gallery = client.predict(api_name="/top_losses")
        assert len(gallery) == 15 and "Top losses" in title
    finally:
        demo.close()
