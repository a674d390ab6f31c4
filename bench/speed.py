"""How fast tlapp's engine trains, against a plain PyTorch loop of the kind found in tutorials.

    python bench/speed.py                       # resnet18, 224 px, 400 images, 10 epochs
    python bench/speed.py --images 120 --epochs 2 --modes head   # a quick look
    python bench/speed.py --photos /data/hymenoptera --modes head --whole   # real photos, and
                                        # whole processes: tlapp train, --help, app start-up
    python bench/speed.py --json speed.json     # also the raw figures: machine, command, rows

Builds a folder of real-looking JPEGs (varied sizes, some large photos), then times, on the
same data, model, image size, batch size and number of epochs:
- plain: an ImageFolder-style dataset that opens every file with PIL every epoch, timm's
  transforms, a DataLoader with 2 workers, the whole model run forward every step (frozen
  parameters have requires_grad off), fp32, validation after every epoch;
- tlapp: the engine's Job with its defaults (decode once, cached embeddings for head only,
  bf16 and channels_last where the hardware has them), validation after every epoch; its
  embedding pass's images/s is read from the engine's own progress reports.
Each measurement runs in a fresh process, so peak memory is its own. On CUDA it also reports
images/s against the model's FLOP ceiling. Prints a Markdown table; `--json FILE` also writes
the machine, the command and every printed row's figures, unrounded, with its printed cells.

images/s is the images each side actually put through its model over its wall time:
- plain: every training and validation image, every epoch it ran (it runs them all);
- tlapp, head only: every training and validation image once, embedded (or, on the second
  run, read from the embedding cache; the head is then fitted on the embeddings, and the
  epochs setting plays no part), and the test images scored once at the end;
- tlapp, fine-tuning: the same embedding pass for phase one, then every training and
  validation image in each fine-tuning epoch it ran, and the test images once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import machine_line, write_results  # noqa: E402  (bench/results.py)

ROOT = Path(__file__).resolve().parent.parent
MODES = {"head": "all", "last": "last", "full": 0}  # freeze depth per mode
MODE_NAMES = {"head": "head only", "last": "last stage + head", "full": "full fine-tune"}
# Dense bf16 tensor throughput by GPU name, for the share of the ceiling (spec sheets).
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "T4": 65e12,
}


# ----------------------------------------------------------------------------- data
def make_photo(rng: np.random.Generator, size: tuple[int, int], hue: int) -> Image.Image:
    """A photo-like picture: a lit gradient background, a few soft shapes, sensor noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [(xx / w) * 120 + hue * 0.5, (yy / h) * 110 + 40, 160 - (xx / w) * 60 + hue * 0.2], -1
    )
    image = Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(min(w, h) // 12, min(w, h) // 3))
        colour = tuple(
            int(c)
            for c in (rng.integers(0, 255), (hue + rng.integers(0, 60)) % 255, rng.integers(0, 255))
        )
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            [x0 - r, y0 - r, x0 + r, y0 + r], fill=colour
        )
    return image.filter(ImageFilter.GaussianBlur(1.2))


def make_dataset(root: Path, n_images: int, classes: int = 4, seed: int = 0) -> Path:
    """`n_images` JPEGs in `classes` folders; one in ten is a large 12-megapixel photo."""
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        c = i % classes
        large = i % 10 == 0
        size = (
            (4000, 3000) if large else (int(rng.integers(320, 1280)), int(rng.integers(240, 960)))
        )
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        make_photo(rng, size, hue=60 * c).save(folder / f"{i:05d}.jpg", quality=90)
    return root


# ----------------------------------------------------------------------------- the plain loop
def plain_loop(
    data: Path, model_name: str, freeze: str | int, img_size: int, batch_size: int, epochs: int
) -> dict:
    """A tutorial-style fine-tuning loop: decode every file every epoch, full forward."""
    import timm
    import torch
    from timm.data import create_transform, resolve_model_data_config

    from tlapp.data import load_dataset
    from tlapp.models import apply_freeze, freeze_plan

    dataset = load_dataset(data)
    classes = dataset.classes

    class Files(torch.utils.data.Dataset):
        def __init__(self, frame, transform):
            self.items = [(p, classes.index(c)) for p, c in zip(frame["path"], frame["label"])]
            self.transform = transform

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            return self.transform(Image.open(path).convert("RGB")), label

    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=len(classes))
    apply_freeze(model, freeze_plan(model, freeze))
    cfg = resolve_model_data_config(model)
    cfg["input_size"] = (3, img_size, img_size)
    train = torch.utils.data.DataLoader(
        Files(dataset.split("train"), create_transform(**cfg, is_training=True)),
        batch_size=batch_size,
        shuffle=True,
        num_workers=2,
    )
    val = torch.utils.data.DataLoader(
        Files(dataset.split("val"), create_transform(**cfg)), batch_size=batch_size, num_workers=2
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    processed = 0  # every image put through the model, training and validation
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, targets in train:
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            processed += len(images)
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, targets in val:
                correct += (model(images).argmax(1) == targets).sum().item()
                processed += len(images)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "images": processed,
        "trained_images": len(train.dataset) * epochs,
        "epochs_run": epochs,
        "split": {"train": len(train.dataset), "val": len(val.dataset)},
        "val_accuracy": correct / len(val.dataset),
    }


# ----------------------------------------------------------------------------- tlapp
class EmbeddingRate:
    """A Trainer callback: images/s of the embedding pass, from the engine's own progress
    reports (the images between two consecutive "Computing embeddings" reports over the time
    between them: steady throughput, without the decoding that may come between)."""

    def __init__(self):
        self.images, self.seconds, self.last = 0, 0.0, None

    def on_progress(self, t) -> None:
        what, done, _ = t.progress
        now = time.perf_counter()
        if what == "Computing embeddings" and self.last and self.last[0] == what:
            self.images += done - self.last[1]
            self.seconds += now - self.last[2]
        self.last = (what, done, now)

    @property
    def per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds else None


def tlapp_run(
    data: Path,
    model_name: str,
    freeze,
    img_size: int,
    batch_size: int,
    epochs: int,
    cache_dir: str,
    out: str,
) -> dict:
    from tlapp import runs
    from tlapp.config import make_config
    from tlapp.train import Job

    config = make_config(
        data=str(data),
        model=model_name,
        freeze=freeze,
        weights="none",
        img_size=img_size,
        batch_size=batch_size,
        epochs=epochs,
        out=out,
        cache_dir=cache_dir,
    )
    rate = EmbeddingRate()
    start = time.perf_counter()
    state = Job(config, callbacks=[rate]).start().wait()
    wall = time.perf_counter() - start
    if state.status != "done":
        raise SystemExit(f"tlapp run failed: {state.message}")
    info = runs.read_config(out)
    split = info["dataset"]["images"]
    phases = [row["phase"] for row in state.history]  # one row per epoch it ran
    tuned = phases.count("fine-tune")
    return {
        "wall_s": wall,
        "images": processed_by_tlapp(split, len(phases), (info.get("test") or {}).get("images")),
        "trained_images": split["train"] * tuned,
        "fine_tuning_epochs_run": tuned,
        "split": split,
        "val_accuracy": state.history[-1]["val_accuracy"],
        "precision": info["precision"],
        "device": info["device"],
        "embedding_images_per_s": rate.per_second,
    }


def processed_by_tlapp(split: dict, passes: int, test_images: int | None) -> int:
    """Images a tlapp run put through its model: the training and validation images once per
    epoch row of its metrics (phase one's embedding pass is epoch 0, each fine-tuning epoch
    one more), and the test images scored once at the end."""
    return (split["train"] + split["val"]) * passes + (test_images or 0)


def resolve_freeze(model_name: str, mode: str):
    from tlapp.models import preview_freeze

    if MODES[mode] != "last":
        return MODES[mode]
    return len(preview_freeze(model_name, 0).stages) - 1


def child(args) -> None:
    """One measurement, in its own process; prints a JSON line."""
    freeze = resolve_freeze(args.model, args.mode)
    if args.engine == "plain":
        result = plain_loop(
            Path(args.data), args.model, freeze, args.img_size, args.batch_size, args.epochs
        )
    else:
        result = tlapp_run(
            Path(args.data),
            args.model,
            freeze,
            args.img_size,
            args.batch_size,
            args.epochs,
            args.cache_dir,
            args.out,
        )
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    result["peak_rss_gb"] = peak_kb / 1024**2
    print("RESULT " + json.dumps(result), flush=True)


def run_flags(args) -> list[str]:
    """The settings every measurement shares, as command-line flags (of this script and of
    `tlapp train`)."""
    return [
        "--model",
        args.model,
        "--img-size",
        str(args.img_size),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
    ]


def child_command(engine: str, mode: str, args, data: Path) -> list[str]:
    """This script, run as one measurement in a fresh process."""
    where = ["--data", str(data)]
    return [sys.executable, __file__, "--child", "--engine", engine, "--mode", mode, *where] + (
        run_flags(args)
    )


def measure(engine: str, mode: str, args, data: Path, cache_dir: str, out: str) -> dict:
    cmd = child_command(engine, mode, args, data) + ["--cache-dir", cache_dir, "--out", out]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{engine}/{mode} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["images_per_s"] = result["images"] / result["wall_s"]
    print(
        f"  {engine:5s} {MODE_NAMES[mode]:18s} {result['wall_s']:7.1f} s  "
        f"{result['images_per_s']:7.1f} img/s  peak {result['peak_rss_gb']:.2f} GB",
        file=sys.stderr,
    )
    return result


# ----------------------------------------------------------------------------- GPU ceiling
def gpu_report(args) -> tuple[str, dict | None]:
    """resnet50 at 224, bf16, from a folder of JPEGs: trained images/s and share of the FLOP
    ceiling, as a sentence and as figures (None without a GPU)."""
    import torch

    if not torch.cuda.is_available():
        return "No CUDA GPU here: the GPU rows were not measured.", None
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    name = torch.cuda.get_device_name()
    model = (
        timm.create_model("resnet50", num_classes=4).cuda().to(memory_format=torch.channels_last)
    )
    x = torch.randn(1, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x).float().sum().backward()
    flops_per_image = counter.get_total_flops()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "gpu", args.gpu_images)
        result = tlapp_run(
            data,
            "resnet50",
            0,
            224,
            256,
            args.epochs,
            str(Path(tmp) / "cache"),
            str(Path(tmp) / "run"),
        )
    # Trained images only: the FLOPs counted are a forward and backward pass, which validation
    # and the embedding pass do not make (a lower bound on the share, as the wall time holds them).
    ips = result["trained_images"] / result["wall_s"]
    peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
    share = f"{ips * flops_per_image / peak:.1%}" if peak else "unknown (GPU not in the table)"
    text = (
        f"GPU {name}: resnet50 224 px bf16, batch 256, {args.gpu_images} JPEGs, full fine-tune: "
        f"{ips:,.0f} trained images/s end to end (training images × epochs run over the whole "
        f"run's time); {flops_per_image / 1e9:.1f} GFLOP per image (fwd+bwd) "
        f"→ share of the bf16 ceiling: {share}."
    )
    figures = {
        "table": "gpu ceiling",
        "gpu": name,
        "wall_s": result["wall_s"],
        "trained_images": result["trained_images"],
        "trained_images_per_s": ips,
        "flops_per_image": flops_per_image,
        "peak_flops": peak,
        "ceiling_share": ips * flops_per_image / peak if peak else None,
        "printed": text,
    }
    return text, figures


# ----------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--modes", default="head,last,full")
    p.add_argument("--gpu-images", type=int, default=2000)
    p.add_argument("--photos", default="", help="a folder of real photos instead of generated")
    p.add_argument(
        "--whole", action="store_true", help="also whole processes and start-up (bench/startup.py)"
    )
    p.add_argument(
        "--json",
        default="",
        metavar="FILE",
        help="also write the raw results there: machine, command and every printed row",
    )
    for hidden in ("--engine", "--mode", "--data", "--cache-dir", "--out"):
        p.add_argument(hidden, default="", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        if args.photos:
            data = Path(args.photos)
            args.images = len([p for p in data.rglob("*") if p.is_file()])
        else:
            data = make_dataset(tmp / "photos", args.images)
            print(f"made {args.images} JPEGs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        for mode in args.modes.split(","):
            plain = measure(
                "plain", mode, args, data, str(tmp / "cache"), str(tmp / f"run-p-{mode}")
            )
            ours = measure("tlapp", mode, args, data, str(tmp / "cache"), str(tmp / f"run-{mode}"))
            rows.append(
                (MODE_NAMES[mode], plain, ours, ours["wall_s"] and plain["wall_s"] / ours["wall_s"])
            )
            if mode == "head":
                again = measure(
                    "tlapp", mode, args, data, str(tmp / "cache"), str(tmp / "run-head-2")
                )
                rows.append(
                    ("head only, second run", plain, again, plain["wall_s"] / again["wall_s"])
                )
        whole = whole_rows(data, args) if args.whole else []
    speed = [speed_row(*row) for row in rows]
    tables = {"speed": speed_table(rows, speed, args)}
    print("\n" + tables["speed"] + f"\n\n{IMAGES_PER_S}")
    if whole:
        tables.update(whole_tables(whole))
        print("\n" + tables["whole"] + "\n\n" + tables["startup"])
    gpu_text, gpu = gpu_report(args)
    print("\n" + gpu_text)
    if gpu:
        tables["gpu"] = gpu_text
    if args.json:
        write_results(args.json, {"rows": speed + whole + ([gpu] if gpu else [])}, tables)


# ----------------------------------------------------------------------------- tables
SPEED_COLUMNS = (
    "mode",
    "plain loop",
    "tlapp",
    "plain img/s",
    "tlapp img/s",
    "speed-up",
    "plain peak RSS",
    "tlapp peak RSS",
)
IMAGES_PER_S = (
    "images/s: the images each side put through its model over its wall time. Plain: every "
    "training and validation image, every epoch. tlapp, head only: every training and "
    "validation image once (embedded, or read from the embedding cache on the second run; "
    "epochs play no part), and the test images once. tlapp, fine-tuning: that pass for phase "
    "one, then every training and validation image in each fine-tuning epoch it ran, and the "
    "test images once."
)


def speed_row(name: str, plain: dict, ours: dict, ratio: float) -> dict:
    """One row of the speed table: its figures, unrounded, and the cells it prints."""
    cells = (
        name,
        f"{plain['wall_s']:.1f} s",
        f"{ours['wall_s']:.1f} s",
        f"{plain['images_per_s']:.1f}",
        f"{ours['images_per_s']:.1f}",
        f"{ratio:.1f}x",
        f"{plain['peak_rss_gb']:.2f} GB",
        f"{ours['peak_rss_gb']:.2f} GB",
    )
    return {
        "table": "speed",
        "mode": name,
        "plain": side_figures(plain),
        "tlapp": side_figures(ours),
        "speed_up": ratio,
        "printed": dict(zip(SPEED_COLUMNS, cells)),
    }


def side_figures(result: dict) -> dict:
    """One side's measurement as --json keeps it."""
    keys = (
        "wall_s",
        "images",
        "images_per_s",
        "trained_images",
        "epochs_run",
        "fine_tuning_epochs_run",
        "split",
        "val_accuracy",
        "peak_rss_gb",
        "precision",
        "device",
        "embedding_images_per_s",
    )
    return {k: result[k] for k in keys if k in result}


def markdown(columns, rows: list[dict]) -> list[str]:
    """A Markdown table of rows' printed cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(row["printed"][c] for c in columns) + " |" for row in rows]


def whole_rows(data: Path, args) -> list[dict]:
    """Whole processes, imports included: what a user waits for (bench/startup.py)."""
    from startup import startup_rows, whole_process_rows

    rows = []
    for what, plain, ours in whole_process_rows(data, args, child_command, run_flags):
        cells = (what, f"{plain:.1f} s", f"{ours:.1f} s", f"{plain / ours:.1f}x")
        rows.append(
            {
                "table": "whole process",
                "what": what,
                "plain_s": plain,
                "tlapp_s": ours,
                "ratio": plain / ours,
                "printed": dict(zip(WHOLE_COLUMNS, cells)),
            }
        )
    for what, seconds in startup_rows(data):
        cells = (what, f"{seconds:.2f} s")
        rows.append(
            {
                "table": "start-up",
                "what": what,
                "seconds": seconds,
                "printed": dict(zip(STARTUP_COLUMNS, cells)),
            }
        )
    return rows


WHOLE_COLUMNS = ("whole process", "plain loop", "tlapp", "ratio")
STARTUP_COLUMNS = ("start-up", "seconds (median of 3)")


def whole_tables(rows: list[dict]) -> dict[str, str]:
    whole = [r for r in rows if r["table"] == "whole process"]
    startup = [r for r in rows if r["table"] == "start-up"]
    return {
        "whole": "\n".join(markdown(WHOLE_COLUMNS, whole)),
        "startup": "\n".join(markdown(STARTUP_COLUMNS, startup)),
    }


def speed_table(rows, speed: list[dict], args) -> str:
    """What was run and on what, the table, and tlapp's embedding pass in images/s."""
    ours = rows[0][2]
    split = ours["split"]
    source = "photos" if args.photos else "generated JPEGs"
    lines = [
        f"{args.model}, {args.img_size} px, {args.images} {source} (train {split['train']}, "
        f"val {split['val']}, test {split.get('test', 0)}), batch {args.batch_size}, "
        f"{args.epochs} epochs. {machine_line(ours.get('precision'))}",
        "",
        *markdown(SPEED_COLUMNS, speed),
    ]
    rates = [(name, ours["embedding_images_per_s"]) for name, _, ours, _ in rows]
    shown = [f"{name}: {rate:.0f} images/s" for name, rate in rates if rate]
    if shown:
        lines += [
            "",
            f"tlapp's embedding pass (frozen backbone, each image once): {'; '.join(shown)}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
