"""Hostile and broken uploads: each ends in a clear reason, and nothing lands outside the sandbox."""

import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import colour_image, write_classes, zip_folder
from PIL import Image

from tlapp.data import DataError, Limits, assemble_upload, load_dataset, open_image


def png_bytes(seed=0) -> bytes:
    buffer = io.BytesIO()
    colour_image((200, 30, 30), seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


def files_outside(root: Path, allowed: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(allowed)]


def hostile_zip(path: Path) -> Path:
    """Two good classes plus every kind of entry that must never be extracted as named."""
    with zipfile.ZipFile(path, "w") as zf:
        for c in ("cat", "dog"):
            for i in range(4):
                zf.writestr(f"pets/{c}/{i}.png", png_bytes(i + (10 if c == "dog" else 0)))
        zf.writestr("../escaped.png", png_bytes())
        zf.writestr("pets/../../escaped2.png", png_bytes())
        zf.writestr("/abs/escaped3.png", png_bytes())
        zf.writestr("C:/windows/escaped4.png", png_bytes())
        link = zipfile.ZipInfo("pets/cat/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("pets/cat/caf\u00e9.png", png_bytes(21))  # NFC
        zf.writestr("pets/cat/cafe\u0301.png", png_bytes(22))  # NFD: the same name once normalised
        zf.writestr("__MACOSX/pets/cat/._0.png", b"\0\0")
        zf.writestr("pets/.DS_Store", b"\0\0")
    return path


def test_a_hostile_zip_extracts_only_inside_its_folder(tmp_path):
    sandbox = tmp_path / "sandbox"
    ds = load_dataset(hostile_zip(tmp_path / "up.zip"), extract_to=sandbox / "data")
    assert ds.classes == ["cat", "dog"]
    assert len(ds.samples) == 9  # 8 good images + café once
    reasons = dict(ds.skipped.itertuples(index=False))
    assert sum("outside" in r for r in reasons.values()) == 4
    assert sum("link" in r for r in reasons.values()) == 1
    assert sum("same name" in r for r in reasons.values()) == 1
    assert not any(".DS_Store" in p or "MACOSX" in p for p in reasons)
    outside = [p for p in files_outside(tmp_path, sandbox) if p.name != "up.zip"]
    assert outside == []  # nothing written outside the sandbox
    assert not list(tmp_path.parent.glob("escaped*")) and not Path("/abs/escaped3.png").exists()
    assert not (sandbox / "data" / "pets" / "cat" / "link.png").exists()


def test_zip_limits_are_checked_before_and_during_extraction(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(30):
            zf.writestr(f"a/{i}.png", b"x")
    with pytest.raises(DataError, match="holds 30 files; the limit here is 20"):
        load_dataset(many, extract_to=tmp_path / "x1", limits=Limits(max_files=20))

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/zeros.png", b"\0" * 5_000_000)  # compresses to a few KB
    assert big.stat().st_size < 50_000
    with pytest.raises(DataError, match="unpacks to more than"):
        load_dataset(big, extract_to=tmp_path / "x2", limits=Limits(max_bytes=1_000_000))


def lie_about_size(zip_path: Path, real: int, claimed: int) -> None:
    """Rewrite the uncompressed size in both headers, as a crafted bomb would."""
    data = bytearray(zip_path.read_bytes())
    old, new = struct.pack("<I", real), struct.pack("<I", claimed)
    assert data.count(old) >= 2
    zip_path.write_bytes(bytes(data).replace(old, new))


def test_bytes_are_counted_while_extracting(tmp_path):
    bomb = tmp_path / "liar.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/big.png", b"\0" * 3_000_000)
    lie_about_size(bomb, 3_000_000, 1000)
    with zipfile.ZipFile(bomb) as zf:
        assert zf.infolist()[0].file_size == 1000  # the header now lies
    with pytest.raises(DataError):
        load_dataset(bomb, extract_to=tmp_path / "x", limits=Limits(max_bytes=100_000))
    assert sum(p.stat().st_size for p in (tmp_path / "x").rglob("*") if p.is_file()) <= 100_000


def test_not_a_zip_is_a_clear_error(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 definitely not")
    with pytest.raises(DataError, match="not a valid zip"):
        load_dataset(tmp_path / "fake.zip", extract_to=tmp_path / "x")


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny file whose header claims width x height pixels: a decompression bomb."""
    raw = zlib.compress(b"\0" * (1 + width * 3) * 2)

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def make_every_kind_of_file(folder: Path) -> dict[str, str | None]:
    """File name -> expected reason fragment (None: must load)."""
    folder.mkdir(parents=True)
    base = colour_image((40, 200, 90), size=40)
    cases: dict[str, str | None] = {}
    (folder / "bomb.png").write_bytes(png_with_header_size(20000, 20000))
    cases["bomb.png"] = "too large"
    good = io.BytesIO()
    base.save(good, "JPEG")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[:200])
    cases["truncated.jpg"] = ""
    (folder / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = "not an image"
    (folder / "text.png").write_text("hello")
    cases["text.png"] = "not an image"
    (folder / "script.webp").write_bytes(b"<script>alert(1)</script>")
    cases["script.webp"] = "not an image"
    Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(
        folder / "grey16.png"
    )
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.convert("P").save(folder / "palette.png")
    base.convert("RGBA").save(folder / "alpha.png")
    base.convert("LA").save(folder / "grey_alpha.png")
    frames = [colour_image((i * 60, 20, 20), size=40) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (50, 20), (1, 2, 3)).save(folder / "rotated.jpg", exif=exif)
    base.save(folder / "gif_named.jpg", "GIF")
    for name in (
        "grey16.png",
        "cmyk.jpg",
        "palette.png",
        "alpha.png",
        "grey_alpha.png",
        "animated.gif",
        "rotated.jpg",
        "gif_named.jpg",
    ):
        cases[name] = None
    eps = io.BytesIO()
    base.save(eps, "EPS") if "EPS" in Image.SAVE else eps.write(b"%!PS-Adobe-3.0 EPSF-3.0\n")
    (folder / "vector.jpg").write_bytes(eps.getvalue())  # a format we refuse to decode
    cases["vector.jpg"] = "not an image"
    return cases


def test_every_kind_of_image_loads_or_is_skipped_with_a_reason(tmp_path):
    root = write_classes(tmp_path / "data", per_class=3)
    cases = make_every_kind_of_file(root / "red" / "odd")
    ds = load_dataset(root)
    skipped = {Path(p).name: r for p, r in ds.skipped.itertuples(index=False)}
    used = {Path(p).name for p in ds.samples["path"]}
    for name, reason in cases.items():
        if reason is None:
            assert name in used, name
            im = open_image(root / "red" / "odd" / name)
            assert im.mode == "RGB"
        else:
            assert name in skipped and reason in skipped[name], (name, skipped.get(name))
    assert open_image(root / "red" / "odd" / "rotated.jpg").size == (20, 50)


def test_pixel_limit_is_a_setting(tmp_path):
    root = write_classes(tmp_path / "d", per_class=2)  # 48x48 images
    ds = load_dataset(root, limits=Limits(max_pixels=40 * 40))
    assert len(ds.samples) == 0 and ds.skipped["reason"].str.contains("too large").all()


@pytest.mark.parametrize(
    "names", [["chat noir", "chien"], ["猫", "犬"], ["naïve café", "São Paulo"]]
)
def test_unicode_and_spaces_in_class_names(tmp_path, names):
    root = write_classes(
        tmp_path / "d", per_class=3, classes={n: (i * 90, 50, 50) for i, n in enumerate(names)}
    )
    ds = load_dataset(root)
    assert ds.classes == sorted(names)
    ds.check()


def test_thousands_of_classes(tmp_path):
    root = tmp_path / "many"
    for i in range(2000):
        (root / f"class {i:04d}").mkdir(parents=True)
        for j in range(2):
            (root / f"class {i:04d}" / f"{j}.png").write_bytes(png_bytes(seed=2 * i + j))
    ds = load_dataset(root)
    assert len(ds.classes) == 2000 and len(ds.split("val")) == 2000
    assert len(ds.report()) == 2001


def test_no_classes_at_all(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found 0"):
        load_dataset(tmp_path / "empty").check()


def test_a_browser_folder_upload_cannot_escape_or_exceed_limits(tmp_path):
    uploads = tmp_path / "gradio"
    uploads.mkdir()
    files = []
    for i, name in enumerate(["0.png", "1.png", "evil.png"]):
        (uploads / name).write_bytes(png_bytes(i))
        files.append(uploads / name)
    reported = [
        {"path": "pets/cat/0.png", "size": files[0].stat().st_size},
        {"path": "pets/dog/1.png", "size": files[1].stat().st_size},
        {"path": "../../evil.png", "size": files[2].stat().st_size},
    ]
    target = tmp_path / "session" / "data"
    assemble_upload(files, reported, target)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*.png")) == [
        "evil.png",
        "pets/cat/0.png",
        "pets/dog/1.png",
    ]
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(DataError, match="limit"):
        assemble_upload(files, reported, target, Limits(max_files=2))
    with pytest.raises(DataError, match="limit"):
        assemble_upload(files, reported, target, Limits(max_bytes=100))
    assemble_upload(files, "not a list", target)  # a malformed report is ignored, not fatal


def test_a_zip_never_replaces_the_users_folder_beside_it(tmp_path, class_folder):
    import shutil as sh

    mine = tmp_path / "colours"
    if mine != class_folder:
        sh.copytree(class_folder, mine)
    (mine / "notes.txt").write_text("my own file")
    archive = zip_folder(mine, tmp_path / "colours.zip")
    ds = load_dataset(archive)  # no extract_to: it must not unpack over ./colours
    assert len(ds.samples) == 36 and not str(ds.root).startswith(str(mine))
    assert (mine / "notes.txt").read_text() == "my own file"
    with pytest.raises(DataError, match="already exists and is not the app's"):
        load_dataset(archive, extract_to=mine)
    assert (mine / "notes.txt").exists()


def test_long_thin_images_are_refused_before_they_become_huge_tensors(tmp_path):
    root = write_classes(tmp_path / "d", per_class=3)
    Image.new("RGB", (1000, 1), (9, 9, 9)).save(root / "red" / "strip.png")
    ds = load_dataset(root)
    reasons = dict((Path(p).name, r) for p, r in ds.skipped.itertuples(index=False))
    assert "too long and thin" in reasons["strip.png"]
