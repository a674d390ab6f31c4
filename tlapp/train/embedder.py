"""One room for turning images into embeddings: a backbone on its device, with its preprocessing,
precision and the cache of what it computed.

    embedder = Embedder.build(config, dataset)    # the model, device and precision of a run
    features = embedder.features()                # every train/val/test image, cached on disk
    rows = embedder.embed_paths(["a.png", "b.png"])   # [2, dim]: images outside the split
    feed = embedder.feed("training", paths, targets, train=True)   # decoded batches

The Trainer holds one: phase one asks it for the embeddings its head is fitted on, fine-tuning
for the decoded images. The methods (k-fold, self-training, distillation) build one with every
stage frozen and ask it the same, so a method and a head-only run share one cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch

from .. import runs
from ..config import TrainConfig
from ..data import Dataset, default_cache_dir, file_hash, file_hashes
from ..geometry import eval_geometry
from .batches import BatchFeed, DecodedImages, ImageSource, to_model_input
from .distributed import World, split_work
from .features import BATCHNORM_IMAGES, EmbeddingStore, Features, embed, reestimate_batchnorm
from .hardware import autocast_context, pick_device, resolve_precision, tune_backends
from .recipes import LONG, ModelSetup, greyscale, long_share, setup_model, wants_whole
from .reuse import batchnorm_layers, cache_key, load_batchnorm, save_batchnorm


def _quiet(what: str, done: int, total: int) -> None:
    """Progress that nobody hears."""


@dataclass
class Embedder:
    """A run's model on its device, and how it embeds the run's images."""

    config: TrainConfig
    dataset: Dataset
    setup: ModelSetup  # the model, what its weights are, its freeze plan and preprocessing
    device: torch.device
    precision: str  # fp32, bf16 or fp16
    world: World  # one process, unless torchrun started several
    report: Callable[[str, int, int], None] = _quiet  # progress; it may raise to stop the work
    batch_size: int = 0  # of the feeds it builds; the Trainer lowers it when memory runs out
    cache_hits: int = 0  # images whose embeddings the last `features()` found on disk
    notes: list[str] = field(default_factory=list)  # what the user should know of the work

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        dataset: Dataset,
        report: Callable[[str, int, int], None] = _quiet,
        world: World | None = None,
    ) -> Embedder:
        """The model `config` describes (weights, freeze, image size), seeded, on its device."""
        world = world or World.current()
        device = world.place(pick_device(config.device))
        tune_backends(device)
        torch.manual_seed(config.seed)
        whole = wants_whole(config, dataset)
        setup = setup_model(config, dataset.classes, whole)
        precision = resolve_precision(config.precision, device)
        embedder = cls(config, dataset, setup, device, precision, world, report, config.batch_size)
        if whole and config.framing == "auto":
            embedder.notes.append(
                f"Images enter the model whole, squeezed to a square, not centre-cropped: "
                f"{long_share(dataset):.0%} of the training images are at least {LONG:g} times "
                "as long as they are wide, and a centre crop would cut off their ends."
            )
        memory = torch.channels_last if embedder.channels_last else torch.contiguous_format
        setup.model.to(device, memory_format=memory)
        return embedder

    @property
    def model(self) -> torch.nn.Module:
        return self.setup.model

    @property
    def data_cfg(self) -> dict:
        return self.setup.data_cfg

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def channels_last(self) -> bool:
        return self.cuda or self.precision == "bf16"

    @property
    def autocast(self):
        return autocast_context(self.device, self.precision)

    # --------------------------------------------------------------- decoded images
    def feed(self, split: str, paths: list[str], targets, train: bool) -> BatchFeed:
        """Images decoded once as the evaluation transform resizes them (its crop mode), batched."""
        images = DecodedImages.build(
            paths,
            eval_geometry(self.data_cfg, self.config.img_size),
            int(self.config.memory_budget_gb * (1 << 30) * (0.8 if train else 0.2)),
            progress=lambda done, total: self.report(f"Decoding {split} images", done, total),
        )
        return BatchFeed(
            images,
            targets,
            self.config.img_size,
            self.batch_size,
            augment=train and self.config.augment,
            colour=not greyscale(self.dataset),
            shuffle=train,
            seed=self.config.seed,
            pin=self.cuda,
        )

    def source(self) -> ImageSource:
        """The run's images, decoded: the training ones now, the validation ones when first used
        (after the training images' embeddings, whose progress then shows sooner: 0.4 s of 2.9
        on the ants/bees photos)."""
        d = self.dataset
        train = self.feed("training", d.split("train")["path"].tolist(), d.targets("train"), True)

        def val() -> BatchFeed:
            paths = d.split("val")["path"].tolist()
            return self.feed("validation", paths, d.targets("val"), False)

        return ImageSource(train, val, self.data_cfg, self.device, self.channels_last)

    # --------------------------------------------------------------- the cache key
    def weights_identity(self) -> str:
        """What the backbone's weights are, for the cache key: hub name, seed, or file content."""
        weights = self.setup.weights
        if weights.kind == "pretrained":
            return f"pretrained {weights.source}"
        if weights.kind == "random":
            return f"random seed {self.config.seed}"
        path = Path(self.config.weights)
        return f"file {file_hash(str(path / runs.WEIGHTS if path.is_dir() else path))}"

    def key(self, train_hashes: list[str] | None = None) -> str:
        """Everything embeddings depend on; with recalibrated BatchNorm, the training images too."""
        keys = ("mean", "std", "interpolation", "crop_pct", "crop_mode")
        cfg = {k: self.data_cfg.get(k) for k in keys}
        return cache_key(
            # The sample (seeded by the weights' seed), its size and the batch size change the
            # statistics.
            batchnorm_from=cache_key(
                images=train_hashes, batch_size=self.batch_size, sample=BATCHNORM_IMAGES
            )
            if train_hashes
            else "weights",
            model=self.config.model,
            weights=self.weights_identity(),
            img_size=self.config.img_size,
            preprocessing=cfg,
            precision=self.precision,
            timm=timm.__version__,
            views="plain",
        )

    # --------------------------------------------------------------- embeddings
    def features(self, images: ImageSource | None = None, with_test: bool = True) -> Features:
        """Embeddings of every train, val and test image: from the cache, or computed now and
        cached. The test ones only ever score the kept head at the end: nothing is fitted or
        chosen on them.

        Missing ones are computed from `images` when the run has decoded them already
        (fine-tuning), otherwise only the missing images are decoded."""
        d = self.dataset
        train_paths, val_paths = d.split("train")["path"].tolist(), d.split("val")["path"].tolist()
        test_paths = d.split("test")["path"].tolist() if with_test else []
        paths = train_paths + val_paths + test_paths
        hashes = file_hashes(paths, self.report)
        recalibrated = self.setup.weights.kind == "random"
        store = EmbeddingStore(
            self.config.cache_dir or default_cache_dir(),
            self.key(hashes[: len(train_paths)] if recalibrated else None),
        )
        if recalibrated:
            images = self._recalibrate_batchnorm(store, images)
        cached = store.lookup(hashes) if self.config.feature_cache else {}
        missing = [i for i, h in enumerate(hashes) if h not in cached]
        self.cache_hits = len(paths) - len(missing)
        if missing:
            # Several processes embed a share each and all get every row: then each fits the
            # same head on the same numbers, and they agree on phase one without exchanging a
            # model.
            new = split_work(
                self.world,
                missing,
                lambda part: torch.stack(list(self._embed_missing(paths, part, images))),
            )
            new = {hashes[i]: row for i, row in zip(missing, new)}
            if self.config.feature_cache and self.world.is_main:
                store.add(new)
            cached |= new
        rows = torch.stack([cached[h][:1] for h in hashes])
        n, v = len(train_paths), len(train_paths) + len(val_paths)
        train_targets, val_targets = d.targets("train"), d.targets("val")
        return Features(
            rows[:n],
            torch.as_tensor(train_targets),
            rows[n:v, 0],
            torch.as_tensor(val_targets),
            store,
            hashes[:n],
            rows[v:, 0],
        )

    def embed_paths(self, paths: list[str], dim: int) -> torch.Tensor:
        """[len(paths), dim] embeddings of images outside the split, by the backbone as it is
        now (the plain view; not cached)."""
        if not paths:
            return torch.empty(0, dim)
        feed = self.feed("unlabelled", paths, np.zeros(len(paths), np.int64), train=False)
        return self._embed(
            feed,
            list(range(len(paths))),
            lambda done, total: self.report(
                "Computing embeddings of the other images", done, total
            ),
        )[:, 0]

    def _embed(self, feed: BatchFeed, indices: list[int], progress) -> torch.Tensor:
        """[len(indices), 1, dim]: the plain view of the chosen images of a feed."""
        return embed(
            self.model,
            feed,
            indices,
            1,
            self.data_cfg,
            self.device,
            self.autocast,
            self.channels_last,
            progress,
        )

    def _embed_missing(self, paths, missing, images: ImageSource | None, total=None):
        """[len(missing), 1, dim] embeddings, in the order of `missing`."""
        # Counted over all the missing images: training ones first, then validation, then test.
        total = total or len(missing)
        progress = lambda done, _: self.report("Computing embeddings", done, total)  # noqa: E731
        if images is None:
            return self._embed_decoding([paths[i] for i in missing], progress)
        n_train = len(images.train.images)
        n_decoded = n_train + len(self.dataset.split("val"))
        test = [paths[i] for i in missing if i >= n_decoded]  # not decoded for fine-tuning: now
        if test:
            decoded = self._embed_missing(paths, missing[: -len(test)], images, total)
            after = lambda done, _: progress(total - len(test) + done, None)  # noqa: E731
            return decoded + list(self._embed_decoding(test, after))
        train = [i for i in missing if i < n_train]
        val = [i - n_train for i in missing if i >= n_train]
        done = self._embed(images.train, train, progress)
        if not val:  # every validation image is cached: none is decoded
            return list(done)
        after_train = lambda done, _: progress(len(train) + done, None)  # noqa: E731
        return list(done) + list(self._embed(images.val, val, after_train))

    def _embed_decoding(self, paths: list[str], progress) -> torch.Tensor:
        """[len(paths), 1, dim] embeddings of images decoded for this alone."""
        feed = self.feed("new", paths, np.zeros(len(paths), dtype=np.int64), train=True)
        return self._embed(feed, list(range(len(paths))), progress)

    # --------------------------------------------------------------- BatchNorm
    def _recalibrate_batchnorm(
        self, store: EmbeddingStore, images: ImageSource | None
    ) -> ImageSource | None:
        """BatchNorm running statistics averaged over the plain views of a sample of the
        training images (BATCHNORM_IMAGES).

        Random weights come with statistics of nothing (mean 0, variance 1), which make
        eval-mode features explode and disagree with the train-mode ones of fine-tuning. They
        carry nothing to keep, so every layer's are estimated once, before phase one; from then
        on frozen layers keep them. Pretrained and file weights are never touched. The
        statistics are kept with the embeddings, so a run on the same training images takes
        them without decoding an image. Returns the decoded images when it had to decode them,
        for the embedding pass."""
        if not batchnorm_layers(self.model):
            return images
        cached = self.config.feature_cache
        if not (cached and load_batchnorm(store, self.model)):
            images = images or self.source()
            reestimate_batchnorm(self.model, self._sample_batches(images.train), self.autocast)
            if cached and self.world.is_main:
                save_batchnorm(store, self.model)
        sample = min(BATCHNORM_IMAGES, len(self.dataset.split("train")))
        self.notes.append(
            "The backbone starts from random weights, so its BatchNorm statistics were "
            f"estimated on {sample} of your training images before the head was fitted."
        )
        return images

    def _sample_batches(self, feed: BatchFeed):
        """Model inputs of the plain views of a seeded random sample of the training images,
        batch by batch: shuffled, so that every batch mixes the classes as training batches do."""
        order = np.random.default_rng(self.config.seed).permutation(len(feed.images))
        sample = order[:BATCHNORM_IMAGES].tolist()
        mean, std = self.data_cfg["mean"], self.data_cfg["std"]
        for start in range(0, len(sample), feed.batch_size):
            chunk = sample[start : start + feed.batch_size]
            pixels = torch.stack([feed.view(i, augmented=False) for i in chunk])
            self.report("Estimating BatchNorm statistics", start + len(chunk), len(sample))
            yield to_model_input(pixels, mean, std, self.device, self.channels_last)
