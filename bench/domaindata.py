"""The kinds of images our users bring, as benchmark folders: greyscale medical scans, surface
defects with a rare class, and fine-grained photos.

    python bench/domaindata.py sources              # the git commands that fetch the public sets
    python bench/domaindata.py build [--max-side N] # DEST/{mri,tiles,food}, from the clones

Three public sets, each cloned from GitHub at a fixed commit into `TLAPP_DOMAIN_SOURCES`
(default /work/data/clones), are turned into tlapp folders under `TLAPP_DOMAINS` (default
/work/data/bench-domains):

- `mri`: brain MRI tumour slices (greyscale content in RGB JPEGs, 4 classes), from
  SartajBhuvaji/Brain-Tumor-Classification-DataSet. train/: 300 images per class drawn (seed 0)
  from Training/ (no_tumor has 395); test/: the official Testing/ folder without the 88 images
  whose exact bytes are also in Training/ (306 left), so the test score measures new images.
  tlapp splits its validation share off train/.
- `tiles`: magnetic-tile surface defects (greyscale, 6 classes, free 952 : fray 32, 30 to 1),
  from abin24/Magnetic-tile-defect-datasets. (the trailing dot is the repository's), MT_*/Imgs
  JPEGs (the masks are left out). One folder per class: tlapp makes its own validation and test
  shares, as it would for a user's folder.
- `food`: ten Food-101 dishes (fine-grained photos, some pairs alike: carpaccio and tartare),
  from srohit0/food_mnist, split by its meta/train.txt and meta/test.txt. train/: 100 per class
  drawn (seed 0) from the training images; test/: 50 per class drawn from the test images.

`--max-side N` re-saves every image at most N pixels on a side (JPEG, quality 90): a small copy
to carry to another machine; the benchmark's figures use the originals.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
from pathlib import Path

SOURCES = Path(os.environ.get("TLAPP_DOMAIN_SOURCES", "/work/data/clones"))
DOMAINS = Path(os.environ.get("TLAPP_DOMAINS", "/work/data/bench-domains"))
REPOS = {  # folder under SOURCES: (GitHub repository, commit)
    "Brain-Tumor-Classification-DataSet": (
        "SartajBhuvaji/Brain-Tumor-Classification-DataSet",
        "3ea9f4eae54c67e5bddbf6f7a73582967a5f5f79",
    ),
    "Magnetic-tile-defect-datasets.": (
        "abin24/Magnetic-tile-defect-datasets.",
        "cc4eb530b57b9cb7225bf76023873043ffd50655",
    ),
    "food_mnist": ("srohit0/food_mnist", "e6cdf589a9937cf7fcb53d3a86df053be452e1f5"),
}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def drawn(files: list[Path], count: int, seed: int = 0) -> list[Path]:
    files = list(files)
    random.Random(seed).shuffle(files)
    return sorted(files[:count])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def place(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, dest / f.name)


def build_mri(source: Path, dest: Path) -> None:
    seen = {digest(p) for c in (source / "Training").iterdir() for p in images(c)}
    for c in sorted((source / "Training").iterdir()):
        place(drawn(images(c), 300), dest / "train" / c.name)
        new = [p for p in images(source / "Testing" / c.name) if digest(p) not in seen]
        place(new, dest / "test" / c.name)


def build_tiles(source: Path, dest: Path) -> None:
    for c in sorted(source.glob("MT_*")):
        tiles = [p for p in images(c / "Imgs") if p.suffix == ".jpg"]  # the .png are masks
        place(tiles, dest / c.name.removeprefix("MT_").lower())


def build_food(source: Path, dest: Path) -> None:
    for split, count, name in (("train", 100, "train"), ("test", 50, "test")):
        ids = (source / "meta" / f"{split}.txt").read_text().split()
        by_class: dict[str, list[Path]] = {}
        for line in ids:
            label = line.split("/")[0]
            by_class.setdefault(label, []).append(source / "images" / f"{line}.jpg")
        for label, files in sorted(by_class.items()):
            place(drawn(files, count), dest / name / label)


def shrink(folder: Path, max_side: int) -> None:
    """Every image re-saved in place at most `max_side` pixels on a side (JPEG, quality 90)."""
    from PIL import Image

    for path in [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS]:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB")
            im.thumbnail((max_side, max_side))
            path.unlink()
            im.save(path.with_suffix(".jpg"), quality=90)


BUILDERS = {
    "mri": ("Brain-Tumor-Classification-DataSet", build_mri),
    "tiles": ("Magnetic-tile-defect-datasets.", build_tiles),
    "food": ("food_mnist", build_food),
}


def build(dest: Path, max_side: int | None) -> None:
    for name, (folder, builder) in BUILDERS.items():
        target = dest / name
        if target.exists():
            print(f"{target}: there already")
            continue
        builder(SOURCES / folder, target)
        if max_side:
            shrink(target, max_side)
        print(f"{target}: {sum(1 for p in target.rglob('*') if p.is_file())} images")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("sources", help="print the git commands that fetch the public sets")
    b = sub.add_parser("build", help="make the benchmark folders from the clones")
    b.add_argument("dest", nargs="?", type=Path, default=DOMAINS)
    b.add_argument("--max-side", type=int, help="re-save images at most this many pixels")
    args = p.parse_args()
    if args.command == "sources":
        for folder, (repo, commit) in REPOS.items():
            print(f"git clone https://github.com/{repo}.git {SOURCES / folder}")
            print(f"git -C {SOURCES / folder} checkout {commit}")
        return 0
    build(args.dest, args.max_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
