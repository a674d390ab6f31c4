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
    for c in COLORS:
        assert counts(ds)[(c, "train")] == 9 and counts(ds)[(c, "val")] == 3
    again = load_dataset(class_folder, val_fraction=0.25, seed=0)
    assert again.split("val")["path"].tolist() == ds.split("val")["path"].tolist()
    other = load_dataset(class_folder, val_fraction=0.25, seed=1)
    assert other.split("val")["path"].tolist() != ds.split("val")["path"].tolist()


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
        assert counts(ds)[("red", "val")] == round(32 * 0.25)  # still the share asked for
        assert counts(ds)[("green", "val")] == 5


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
    assert counts(ds)[("red", "train")] + counts(ds)[("red", "val")] == 13


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
    assert len(ds.warnings()) == 1 and "'blue' has too few images" in ds.warnings()[0]
