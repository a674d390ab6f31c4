"""Data in: every accepted layout, bad files skipped with a reason, images always 8-bit RGB."""

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import COLORS, colour_image, write_classes, zip_folder
from PIL import Image

from tlapp.data import DataError, ImageError, load_dataset, open_image


def counts(ds):
    return ds.samples.groupby(["label", "split"]).size().to_dict()


def test_class_folders_get_a_stratified_seeded_split(class_folder):
    ds = load_dataset(class_folder, val_fraction=0.25, seed=0)
    assert ds.classes == sorted(COLORS)
    assert ds.layout == "one folder per class"
    for c in COLORS:  # 12 each: 15% held back for test (2), 25% for validation (3)
        assert counts(ds)[(c, "train")] == 7 and counts(ds)[(c, "val")] == 3
        assert counts(ds)[(c, "test")] == 2
    again = load_dataset(class_folder, val_fraction=0.25, seed=0)
    assert again.samples.equals(ds.samples)
    other = load_dataset(class_folder, val_fraction=0.25, seed=1)
    assert other.split("val")["path"].tolist() != ds.split("val")["path"].tolist()
    assert other.split("test")["path"].tolist() != ds.split("test")["path"].tolist()


def test_a_test_share_is_held_back_apart_from_train_and_validation(tmp_path):
    root = write_classes(tmp_path / "d", per_class=40)
    ds = load_dataset(root, val_fraction=0.2, seed=0, test_fraction=0.25)
    test, val, train = (set(ds.split(s)["path"]) for s in ("test", "val", "train"))
    assert not test & val and not test & train and not val & train
    assert len(test | val | train) == 3 * 40
    for c in COLORS:
        assert counts(ds)[(c, "test")] == 10 and counts(ds)[(c, "val")] == 8
    assert ds.warnings() == []
    assert list(ds.report().columns) == ["class", "train", "val", "test", "total"]


def test_no_test_share_reproduces_the_split_made_before_test_shares_existed(class_folder):
    # Runs recorded before test shares resume with test_fraction 0: the same validation images.
    ds = load_dataset(class_folder, val_fraction=0.25, seed=0, test_fraction=0)
    assert "test" not in set(ds.samples["split"])
    for c in COLORS:
        assert counts(ds)[(c, "train")] == 9 and counts(ds)[(c, "val")] == 3
    assert ds.warnings() == []  # asked for none: nothing to warn about


def test_a_class_too_small_for_a_test_share_is_said_and_nothing_is_held_back(tmp_path):
    root = write_classes(tmp_path / "d", per_class=12)
    for extra in sorted((root / "red").iterdir())[6:]:
        extra.unlink()  # red keeps 6 images
    ds = load_dataset(root, seed=0)
    assert "test" not in set(ds.samples["split"])
    (warning,) = ds.warnings()
    assert "No test images were held back" in warning and "'red' has only 6" in warning
    assert "k-fold" in warning


def test_given_train_and_val_folders_get_a_test_share_from_train_only(tmp_path):
    for split, n in (("train", 20), ("val", 5)):
        write_classes(tmp_path / "d" / split, per_class=n, seed=len(split))
    ds = load_dataset(tmp_path / "d", seed=0)
    given_val = {str(p) for p in (tmp_path / "d" / "val").rglob("*.png")}
    assert set(ds.split("val")["path"]) == given_val  # validation stays as given
    assert all("/train/" in p for p in ds.split("test")["path"])
    for c in COLORS:
        assert counts(ds)[(c, "test")] == 3 and counts(ds)[(c, "train")] == 17


def test_copies_of_one_picture_stay_on_one_side_of_the_split(tmp_path):
    root = write_classes(tmp_path / "d", per_class=20)
    originals = sorted((root / "red").iterdir())[:6]
    for i, original in enumerate(originals):
        (root / "red" / f"copy_{i}.png").write_bytes(original.read_bytes())  # exact
        Image.open(original).resize((60, 60)).save(root / "red" / f"bigger_{i}.png")  # near
    Image.open(originals[0]).save(root / "blue" / "mislabelled.png")  # a copy in another class
    for seed in range(5):
        ds = load_dataset(root, val_fraction=0.25, seed=seed)
        split_of = dict(zip(ds.samples["path"], ds.samples["split"]))
        for i, original in enumerate(originals):
            family = [original, root / "red" / f"copy_{i}.png", root / "red" / f"bigger_{i}.png"]
            family += [root / "blue" / "mislabelled.png"] if i == 0 else []
            assert len({split_of[str(p)] for p in family}) == 1, (seed, i)
        test_of = {str(p): s for p, s in zip(ds.samples["path"], ds.samples["split"])}
        assert any(test_of[str(p)] == "test" for p in root.rglob("*.png"))
        assert counts(ds)[("red", "val")] == round(32 * 0.25)  # still the share asked for
        assert counts(ds)[("green", "val")] == 5
        assert counts(ds)[("green", "test")] == 3


def test_train_val_test_folders_are_used_as_given(split_folder):
    ds = load_dataset(split_folder)
    assert ds.layout == "train/val folders"
    for c in COLORS:
        assert counts(ds)[(c, "train")] == 8
        assert counts(ds)[(c, "val")] == 3
        assert counts(ds)[(c, "test")] == 2
    report = ds.report().set_index("class")
    assert report.loc["(all classes)", "total"] == 3 * 13
    assert list(report.columns) == ["train", "val", "test", "total"]


@pytest.mark.parametrize("wrapper", [None, "my photos"])
@pytest.mark.parametrize("layout", ["class_folder", "split_folder"])
def test_zip_of_either_layout(request, tmp_path, layout, wrapper):
    folder = request.getfixturevalue(layout)
    archive = zip_folder(folder, tmp_path / "upload.zip", wrapper)
    from_zip = load_dataset(archive, extract_to=tmp_path / "extracted")
    from_disk = load_dataset(folder)
    assert counts(from_zip) == counts(from_disk)
    assert from_zip.classes == from_disk.classes


def test_csv_of_path_label(class_folder, tmp_path):
    rows = [
        (f"colours/{p.parent.name}/{p.name}", p.parent.name)
        for p in sorted(class_folder.rglob("*.png"))
    ]
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(csv, index=False)
    ds = load_dataset(csv)
    assert ds.classes == sorted(COLORS) and len(ds.samples) == 36
    assert ds.layout.startswith("CSV")


def test_bad_files_are_skipped_with_a_reason_and_a_lying_gif_is_used(class_folder):
    red = class_folder / "red"
    good = io.BytesIO()
    colour_image((200, 40, 40)).save(good, "JPEG")
    (red / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (red / "notes.jpg").write_text("this is not an image")
    (red / "empty.png").write_bytes(b"")
    (red / "readme.txt").write_text("hello")
    colour_image((200, 40, 40)).save(red / "really_a_gif.jpg", "GIF")
    ds = load_dataset(class_folder)
    skipped = {p.split("/")[-1]: reason for p, reason in ds.skipped.itertuples(index=False)}
    assert set(skipped) == {"truncated.jpg", "notes.jpg", "empty.png", "readme.txt"}
    assert "decoded" in skipped["truncated.jpg"] or "read" in skipped["truncated.jpg"]
    assert "not an image" in skipped["readme.txt"]
    assert any(p.endswith("really_a_gif.jpg") for p in ds.samples["path"])
    assert sum(counts(ds).get(("red", s), 0) for s in ("train", "val", "test")) == 13


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16", "CMYK", "1"])
def test_every_mode_opens_as_8bit_rgb(tmp_path, mode):
    base = colour_image((30, 140, 220))
    if mode == "I;16":
        im = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    else:
        im = base.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == base.size
    assert np.asarray(out).max() > 100  # not crushed to black


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    im.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_open_image_reports_a_reason(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError):
        open_image(tmp_path / "bad.png")


def test_hidden_files_are_ignored(class_folder):
    (class_folder / ".DS_Store").write_bytes(b"\0\0")
    (class_folder / "__MACOSX").mkdir()
    colour_image((1, 2, 3)).save(class_folder / "__MACOSX" / "x.png")
    colour_image((1, 2, 3)).save(class_folder / "red" / "._red_00.png")
    ds = load_dataset(class_folder)
    assert ds.classes == sorted(COLORS) and len(ds.samples) == 36 and len(ds.skipped) == 0


def test_problems_are_one_sentence_each(tmp_path):
    write_classes(tmp_path / "one", classes={"cat": (1, 2, 3)})
    with pytest.raises(DataError, match="At least 2 classes"):
        load_dataset(tmp_path / "one").check()
    root = write_classes(tmp_path / "two", classes={"cat": (1, 2, 3), "dog": (9, 9, 9)})
    (root / "bird").mkdir()
    with pytest.raises(DataError, match="'bird' has no usable images"):
        load_dataset(root).check()
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing")


def test_a_class_with_one_image_stays_in_train(tmp_path):
    root = write_classes(tmp_path / "d", per_class=6)
    shutil.rmtree(root / "blue")
    (root / "blue").mkdir()
    colour_image((0, 0, 200)).save(root / "blue" / "only.png")
    ds = load_dataset(root)
    assert counts(ds)[("blue", "train")] == 1 and ("blue", "val") not in counts(ds)
    ds.check()
    no_test, no_val = ds.warnings()
    assert "'blue' has only 1 image " in no_test and "'blue' has too few images" in no_val
