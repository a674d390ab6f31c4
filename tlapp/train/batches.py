"""Batches for the training loop: decode each image once, augment tensors, normalise on the device.

    images = DecodedImages.build(paths, eval_geometry(data_cfg), budget_bytes=4 << 30)
    feed = BatchFeed(images, targets, img_size=224, batch_size=32, augment=True, seed=0)
    for pixels, targets in feed.batches(epoch=1):        # uint8 NCHW on the CPU, int64
        x = to_model_input(pixels, mean, std, device)     # float, normalised, on the device

Every image is decoded once per dataset (JPEG draft mode for large photos) and resized exactly
as timm's evaluation transform resizes it before its crop, for the model's crop mode (center,
squash or border: `tlapp.geometry`); it is kept as uint8 within a memory budget, and decoded
again on demand for images beyond it. Evaluation takes timm's crop (or pad) of it; training takes
the evaluation framing, a flip and a mild colour jitter of the cached tensor. Batches travel as uint8 (4x less to copy)
and become float on the device.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data.distributed import DistributedSampler
from torchvision.transforms import v2

from ..data import ImageError, open_image
from ..geometry import EvalGeometry

DEFAULT_BUDGET_BYTES = 4 << 30  # decoded pixels kept in memory; fits a 16 GB machine with room


def decode(path: str, geometry: EvalGeometry) -> torch.Tensor:
    """One image as uint8 CHW, resized as timm's evaluation transform resizes it before its
    crop (with timm's rounding: rounding differently cost 8 points on 32-pixel digits, where one
    pixel is 3% of the scale); a grey square if the file can no longer be read (it was checked
    when the dataset was scanned)."""
    side = geometry.scale
    try:
        image = open_image(path, draft_size=side)
    except (ImageError, OSError):
        image = Image.new("RGB", (side, side), (128, 128, 128))
    image = geometry.resize(image)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


@dataclass
class DecodedImages:
    """The images of one split, decoded once; `None` marks an image beyond the memory budget."""

    paths: list[str]
    pixels: list[torch.Tensor | None]
    geometry: EvalGeometry  # how they were resized, and how their evaluation view is cropped

    @staticmethod
    def build(
        paths: list[str],
        geometry: EvalGeometry,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        progress: Callable[[int, int], None] | None = None,
    ) -> DecodedImages:
        pixels: list[torch.Tensor | None] = []
        used = 0
        workers = max(2, min(8, os.cpu_count() or 2))
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            for i, tensor in enumerate(pool.map(lambda p: decode(p, geometry), paths)):
                keep = used + tensor.numel() <= budget_bytes
                used += tensor.numel() if keep else 0
                pixels.append(tensor if keep else None)
                if progress and (i % 64 == 0 or i == len(paths) - 1):
                    progress(i + 1, len(paths))
        return DecodedImages(list(paths), pixels, geometry)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        cached = self.pixels[i]
        return cached if cached is not None else decode(self.paths[i], self.geometry)

    @property
    def bytes_in_memory(self) -> int:
        return sum(t.numel() for t in self.pixels if t is not None)


def light_augmentation(frame, colour: bool = True) -> v2.Compose:
    """The evaluation framing (`frame`: timm's crop, or the whole image squeezed), then a
    horizontal flip, mild brightness and contrast jitter, and saturation jitter for colour
    images (on greyscale ones it would tint nothing but costs a colour-space round trip).

    No random crop: training sees what evaluation sees. A crop of part of the image can cut off
    the one thing that gives the label, a scratch at the edge of a part or a lesion at the rim
    of a scan, and then trains the model on a wrong label."""
    jitter = dict(brightness=0.2, contrast=0.2, saturation=0.2 if colour else 0)
    return v2.Compose([frame, v2.RandomHorizontalFlip(), v2.ColorJitter(**jitter)])


def order_seed(seed: int) -> int:
    """The seed of the epoch orders, to which each epoch's number is added (as torch's
    DistributedSampler adds it to its seed: a distributed run's shards then split this order)."""
    return seed * 100_003


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of one epoch; the same for every path that trains on the same data."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(order_seed(seed) + epoch))


class BatchFeed:
    """uint8 batches from DecodedImages: shuffled and augmented for training, timm's evaluation
    crop for evaluation, produced by a background thread while the model computes."""

    def __init__(
        self,
        images: DecodedImages,
        targets: np.ndarray,
        img_size: int,
        batch_size: int,
        augment: bool,
        shuffle: bool,
        seed: int,
        pin: bool = False,
        colour: bool = True,  # False: greyscale images, no saturation jitter
    ):
        self.images, self.targets = images, torch.tensor(targets, dtype=torch.int64)
        self.img_size, self.batch_size, self.shuffle, self.seed, self.pin = (
            img_size,
            batch_size,
            shuffle,
            seed,
            pin,
        )
        self.center = images.geometry.crop  # timm's crop (or pad) for the model's crop mode
        self.augment = light_augmentation(self.center, colour) if augment else None
        self.sampler: DistributedSampler | None = None  # set by `shard`
        self.served = torch.arange(0)  # the images of the last epoch served, in order

    def shard(self, rank: int, processes: int) -> None:
        """Make this feed one process's part of a distributed run: each epoch's order (the one
        `epoch_order` gives) is split by torch's DistributedSampler, rank r taking every
        processes-th image from the r-th (padded to even shards), and each batch is its share."""
        self.sampler = DistributedSampler(
            range(len(self.images)), processes, rank, self.shuffle, order_seed(self.seed)
        )

    @property
    def step_size(self) -> int:
        """Images per batch from this feed: with a sampler, its share of the batch."""
        if self.sampler is None:
            return self.batch_size
        return -(-self.batch_size // self.sampler.num_replicas)

    def order(self, epoch: int) -> torch.Tensor:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            return torch.tensor(list(self.sampler), dtype=torch.int64)
        if self.shuffle:
            return epoch_order(len(self.images), self.seed, epoch)
        return torch.arange(len(self.images))

    def __len__(self) -> int:
        images = len(self.sampler) if self.sampler is not None else len(self.images)
        return -(-images // self.step_size)

    def view(self, i: int, augmented: bool) -> torch.Tensor:
        pixels = self.images[i]
        return self.augment(pixels) if augmented else self.center(pixels)

    def batches(self, epoch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, size = self.order(epoch), self.step_size
        self.served = order
        return prefetch(self._make(order[i : i + size]) for i in range(0, len(order), size))

    def _make(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.stack([self.view(int(i), self.augment is not None) for i in index])
        targets = self.targets[index]
        return (pixels.pin_memory(), targets.pin_memory()) if self.pin else (pixels, targets)


def prefetch(items: Iterable, depth: int = 3) -> Iterator:
    """Yield from `items`, computed ahead in a background thread (torch ops release the GIL).
    Leaving the loop early (a Stop) ends the thread too, and waits for it: a process that exits
    while the thread is inside a torch op aborts ("terminate called without an active exception")."""
    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            put(err)
        put(done)

    thread = threading.Thread(target=produce, daemon=True, name="tlapp-prefetch")
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)  # within one batch's work; never forever


def to_model_input(
    pixels: torch.Tensor, mean, std, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """uint8 NCHW → normalised float on the device (the division happens there, not on the CPU)."""
    x = pixels.to(device, non_blocking=True).float()
    scale = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
    shift = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
    x = (x - shift) / scale
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class ImageSource:
    """Training batches of images: decoded once, augmented as tensors, normalised on the device."""

    def __init__(
        self,
        train: BatchFeed,
        val: BatchFeed | Callable[[], BatchFeed],
        norm: dict,
        device: torch.device,
        channels_last: bool,
    ):
        self.train, self._val, self.norm = train, val, norm
        self.device, self.channels_last = device, channels_last

    @functools.cached_property
    def val(self) -> BatchFeed:
        """The validation feed; given as a function, it is made (its images decoded) when first
        asked for."""
        return self._val() if callable(self._val) else self._val

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)

    def _on_device(self, feed: BatchFeed, epoch: int):
        for pixels, targets in feed.batches(epoch):
            x = to_model_input(
                pixels, self.norm["mean"], self.norm["std"], self.device, self.channels_last
            )
            yield x, targets.to(self.device, non_blocking=True)

    def train_batches(self, epoch: int):
        return self._on_device(self.train, epoch)

    def val_batches(self):
        return self._on_device(self.val, 0)

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)
