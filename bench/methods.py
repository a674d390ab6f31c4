"""Every method beside fine-tuning on one dataset, in one run, and the comparison table.

    python bench/methods.py photos     # ants/bees with EfficientNet-Lite0 ImageNet weights
    python bench/methods.py digits     # the sample digits, resnet18 from random weights
    python bench/methods.py digits --json methods.json   # also the raw figures as JSON

The labelled training set is small on purpose (10 images per class, and 10 more for
validation), the rest of the training images serve as unlabelled images, and the test images
(the photos' own val/ set, or a fifth of the digits) are scored once, never used to choose. On it: prototypes, head only, the two-phase default, 5-fold cross-validation of
the head, self-training with the unlabelled images, AdaBN on a darkened, blue-cast copy of the
test images, and distillation of the two-phase run into a smaller timm model (with its
int8 ONNX export). The copy is cut into two disjoint halves, each class shuffled (seeded) and
halved: AdaBN re-estimates its statistics on one half, unlabelled, and is scored before and
after on the other, so that no image it is scored on set the statistics. Prints each method's
own line and `tlapp compare` over the run folders; `--json FILE` also writes the machine, the
command and every printed row's figures. Real weights and photos: bench/realdata.py.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import WEIGHTS_DIR  # noqa: E402  (bench/realdata.py)
from results import machine_line, write_results  # noqa: E402  (bench/results.py)

SETUPS = {
    "photos": dict(model="tf_efficientnet_lite0", img_size=224, student="test_resnet"),
    "digits": dict(model="resnet18", img_size=64, student="test_resnet"),
}


def split(source: Path, dest: Path, per_class: int, seed: int) -> Path:
    """dest/labelled/{train,val,test}/class and dest/unlabelled/: `per_class` training and as
    many validation images per class, the source's val/ (or a fifth of each class) as the test
    images, scored once and never used to choose, the rest unlabelled."""
    rng = random.Random(seed)
    train_root = source / "train" if (source / "train").is_dir() else source
    for folder in sorted(p for p in train_root.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        rng.shuffle(files)
        if (source / "val").is_dir():
            test = sorted((source / "val" / folder.name).iterdir())
        else:
            test, files = files[: len(files) // 5], files[len(files) // 5 :]
        groups = {
            dest / "labelled" / "train" / folder.name: files[:per_class],
            dest / "labelled" / "val" / folder.name: files[per_class : 2 * per_class],
            dest / "labelled" / "test" / folder.name: test,
            dest / "unlabelled": files[2 * per_class :],
        }
        for target, chosen in groups.items():
            target.mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, target / f"{folder.name}-{f.name}")
    return dest


def shifted(labelled_val: Path, dest: Path) -> Path:
    """A copy of the validation images as another camera might see them: darker, blue cast."""
    for path in labelled_val.rglob("*"):
        if path.is_file():
            image = Image.open(path).convert("RGB")
            image = ImageEnhance.Brightness(image).enhance(0.45)
            r, g, b = image.split()
            image = Image.merge("RGB", (r, g, b.point(lambda v: min(255, v + 60))))
            out = dest / path.relative_to(labelled_val).with_suffix(".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out)
    return dest


def halves(folder: Path, dest: Path, seed: int) -> tuple[Path, Path]:
    """The images of `folder` (class subfolders) in two disjoint halves, dest/adapt/<class> and
    dest/score/<class>: each class's images shuffled (seeded) and cut in two, the odd one out
    going to the scored half."""
    rng = random.Random(seed)
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in class_dir.iterdir() if f.is_file())
        rng.shuffle(files)
        half = len(files) // 2
        for part, chosen in (("adapt", files[:half]), ("score", files[half:])):
            (dest / part / class_dir.name).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, dest / part / class_dir.name / f.name)
    return dest / "adapt", dest / "score"


def timed(label: str, work):
    start = time.perf_counter()
    result = work()
    print(f"{label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("dataset", choices=sorted(SETUPS))
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--weights", default=str(WEIGHTS_DIR / "tf_efficientnet_lite0.safetensors"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--json",
        default="",
        metavar="FILE",
        help="also write the raw results there: machine, command and every printed row",
    )
    args = p.parse_args()

    from tlapp import runs
    from tlapp.config import make_config
    from tlapp.data import load_dataset
    from tlapp.methods import cross_validate
    from tlapp.methods.adabn import adapt_batchnorm
    from tlapp.methods.distill import distill
    from tlapp.methods.pseudo import self_train
    from tlapp.train import Job

    setup = SETUPS[args.dataset]
    if args.dataset == "photos":
        from realdata import photo_set

        source, weights = photo_set(), args.weights
    else:
        source, weights = ROOT / "tlapp" / "sample" / "digits", "none"
    with tempfile.TemporaryDirectory(prefix="tlapp-methods-") as tmp:
        work = split(source, Path(tmp) / "data", args.per_class, args.seed)
        labelled, unlabelled = work / "labelled", work / "unlabelled"
        out = Path(tmp) / "runs"
        common = dict(
            data=str(labelled),
            model=setup["model"],
            img_size=setup["img_size"],
            weights=weights,
            seed=args.seed,
            cache_dir=str(Path(tmp) / "cache"),
        )

        def train(name, **extra):
            config = make_config(out=str(out / name), **common, **extra)
            state = timed(name, lambda: Job(config).start().wait())
            print(f"  {state.message}", file=sys.stderr)
            return out / name

        train("prototypes", freeze="all", head="prototypes")
        head = train("head-only", freeze="all")
        tuned = train("two-phase", epochs=5)
        dataset = load_dataset(labelled, seed=args.seed)
        config = make_config(freeze="all", **common)
        lines, rows = [], []  # the printed lines, and their figures for --json
        cv = timed("k-fold", lambda: cross_validate(config, dataset, folds=5))
        lines.append(f"5-fold cross-validation of the head: {cv.describe()}")
        rows.append(
            method_row(
                "5-fold cross-validation",
                lines[-1],
                folds=cv.folds,
                images=cv.images,
                accuracy=cv.accuracy,
                macro_f1=cv.macro_f1,
            )
        )
        st = timed("self-training", lambda: self_train(config, dataset, [unlabelled], 0.9))
        lines.append(f"Self-training: {st.describe()}")
        rows.append(
            method_row(
                "self-training",
                lines[-1],
                threshold=st.threshold,
                rounds=st.rounds,
                taken=st.taken,
                val_images=st.val_images,
                val_accuracy_before=st.val_accuracy_before,
                val_accuracy_after=st.val_accuracy_after,
            )
        )
        target = shifted(labelled / "test", Path(tmp) / "shifted")
        adapt_on, score_on = halves(target, Path(tmp) / "shifted-halves", args.seed)
        for run in (head, tuned):
            ada = timed(f"AdaBN {run.name}", lambda r=run: adapt_batchnorm(r, [adapt_on], score_on))
            lines.append(f"AdaBN on {run.name}: {ada.describe()}")
            rows.append(
                method_row(
                    f"AdaBN on {run.name}",
                    lines[-1],
                    adapted_on_images=ada.target_images,
                    scored_on_images=ada.labelled_images,
                    accuracy_before=ada.accuracy_before,
                    accuracy_after=ada.accuracy_after,
                )
            )
        report = timed(
            "distillation",
            lambda: distill(
                tuned, setup["student"], out / "distilled", 10, unlabelled_paths=[unlabelled]
            ),
        )
        distilled = report.table.to_string(index=False)
        lines.append(f"Distillation:\n{distilled}")
        rows += table_rows("distillation", report.table, distilled.splitlines()[1:])
        folders = sorted(p for p in out.iterdir() if p.is_dir())
        table = runs.compare(folders)
        printed = [
            {column: _cell(column, value) for column, value in zip(table.columns, row)}
            for row in table.itertuples(index=False)
        ]
        lines = [line.replace(str(out) + "/", "") for line in lines]  # no temporary paths
        text = "\n".join(
            [
                f"{args.dataset}: {args.per_class} labelled images per class, {setup['model']}. "
                + machine_line(),
                "",
                "| " + " | ".join(table.columns) + " |",
                "|---" * len(table.columns) + "|",
                *("| " + " | ".join(cells.values()) + " |" for cells in printed),
                "",
                "```",
                "\n\n".join(lines),
                "```",
            ]
        )
        print(text)
        if args.json:
            compared = table_rows("compare", table, printed)
            write_results(args.json, {"rows": compared + rows}, {"methods": text})


def method_row(method: str, printed: str, **figures) -> dict:
    """A method's printed line and its figures, for --json."""
    return {"table": "methods", "method": method, **_plain(figures), "printed": printed}


def table_rows(name: str, table, printed: list) -> list[dict]:
    """Each row of a printed table (a DataFrame) with what was printed of it (its cells, or
    its line), for --json."""
    return [
        {"table": name, **_plain(row), "printed": line}
        for row, line in zip(table.to_dict("records"), printed)
    ]


def _plain(values: dict) -> dict:
    """Numbers as JSON holds them: numpy scalars as Python ones, NaN as null."""
    out = {}
    for key, value in values.items():
        value = value.item() if hasattr(value, "item") else value
        out[str(key)] = None if isinstance(value, float) and math.isnan(value) else value
    return out


def _cell(column: str, value) -> str:
    """A compare-table cell as printed: shares as percentages, counts as whole numbers."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column.startswith(("test_", "val_")) and column != "test_images":
        return (
            f"{value:.1%}"
            if "accuracy" in column or column in ("test_low", "test_high")
            else f"{value:.3f}"
        )
    if column in ("test_images", "seconds"):
        return f"{value:.0f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
