"""One run on several processes, one per GPU, started by torchrun: data-parallel training.

    torchrun --nproc_per_node 4 -m tlapp train photos/ --model resnet50 --freeze 2 --batch-size 128

    with process_group(config) as world:     # what torchrun describes in WORLD_SIZE, RANK, LOCAL_RANK
        if world.is_main: ...                 # rank 0 writes the run folder and prints progress
        else: train_quietly(config, dataset)  # the others run the same loop, silently (job.py)

Outside torchrun `World.current()` is a single process and every function here hands back what
it was given, so the single-process loop is the loop. Under torchrun the work is torch's own:

- fine-tuning steps through `DistributedDataParallel`, which averages the gradients;
- each split is fed through a `DistributedSampler`: every epoch each process takes its own
  shard, and `--batch-size` is the batch of all processes together, so a run's settings mean
  the same training on any number of GPUs (the shards of one step make up the single-process
  batch of that step);
- validation is sharded too and its logits are gathered, so every process computes the same
  metrics, over every image, and takes the same decisions (best epoch, early stop);
- phase one's embeddings are split between the processes and gathered, and every process fits
  the same head on the same numbers (a deterministic fit on the CPU, in a second);
- the test split, scored once at the end, is scored whole by every process (no exchange).

Rank 0 also writes `distributed.json` in the run folder: how many processes, and how many
images each trained on in each epoch, distinct across processes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .. import runs
from .hardware import pick_device

if TYPE_CHECKING:
    from ..config import TrainConfig
    from .batches import BatchFeed, ImageSource

RECORD = "distributed.json"
OUT_OF_MEMORY_IN_ONE = (
    "Out of memory in one of the processes: train again with a smaller --batch-size (on "
    "several processes it is not lowered by itself, as every process must take the same steps)."
)


@dataclass(frozen=True)
class World:
    """This process's place in the process group: rank 0 of 1 outside torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @staticmethod
    def current() -> World:
        if not (dist.is_available() and dist.is_initialized()):
            return World()
        local = int(os.environ.get("LOCAL_RANK", 0))
        return World(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def place(self, device: torch.device) -> torch.device:
        """This process's GPU (cuda:LOCAL_RANK), made the current one of the calling thread:
        the Job trains in its own thread, not the one that started the group."""
        if not (self.parallel and device.type == "cuda"):
            return device
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device

    def steps(self, images: int, batch_size: int) -> int:
        """Steps per epoch of each process: its shard of the images in its share of the batch."""
        shard, share = -(-images // self.size), -(-batch_size // self.size)
        return -(-shard // share)

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must be to travel: NCCL moves GPU memory, gloo CPU memory."""
        return (
            torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        )


@contextlib.contextmanager
def process_group(config: TrainConfig) -> Iterator[World]:
    """The process group torchrun asked for (NCCL on GPUs, gloo on the CPU), destroyed at the
    end; a single process when torchrun did not start this one."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1:
        yield World()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = check_setup(config, size, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield World.current()
    finally:
        dist.destroy_process_group()


def launched_rank() -> int:
    """This process's rank as torchrun set it, before the process group exists (0 without
    torchrun)."""
    return int(os.environ.get("RANK", 0))


def check_setup(config: TrainConfig, size: int, local_rank: int) -> torch.device:
    """The device of a distributed run, or a sentence saying why it cannot run."""
    device = pick_device(config.device)
    if device.type == "mps":
        raise ValueError("Several processes train on CUDA GPUs or the CPU: add --device cpu.")
    if device.type == "cuda" and local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"torchrun started more processes on this machine than it has GPUs "
            f"({torch.cuda.device_count()}): give --nproc_per_node {torch.cuda.device_count()}."
        )
    if config.batch_size % size:
        raise ValueError(
            f"A batch of {config.batch_size} does not split evenly over {size} processes: "
            f"give a --batch-size that is a multiple of {size} (it is the batch of all of them)."
        )
    return device


# ----------------------------------------------------------------------------- the loop's hooks
def shard(world: World, source: ImageSource | None) -> None:
    """Each process feeds its own shard of each split (torch's DistributedSampler)."""
    if world.parallel and source is not None:
        for feed in (source.train, source.val):
            feed.shard(world.rank, world.size)


def data_parallel(world: World, model: torch.nn.Module, net: torch.nn.Module) -> torch.nn.Module:
    """What fine-tuning steps through: `net` (the model, or the model compiled), or on several
    processes the model in DistributedDataParallel, compiled as `net` was. DDP begins by
    broadcasting rank 0's weights and buffers, so every process fine-tunes the same model."""
    if not world.parallel:
        return net
    device = world.comm_device
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    return torch.compile(ddp) if net is not model else ddp


def end_epoch(
    world: World, model: torch.nn.Module, loss_sum: float, seen: int
) -> tuple[float, int]:
    """Every process ends a fine-tuning epoch as rank 0 does, so that they validate and keep the
    same model: BatchNorm statistics (which DDP does not average: each process last updated
    its own, on its shard) become rank 0's. Returns the training loss sum and image count over
    every shard."""
    if not world.parallel:
        return loss_sum, seen
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
    totals = torch.tensor([loss_sum, seen], dtype=torch.float64, device=world.comm_device)
    dist.all_reduce(totals)
    return totals[0].item(), int(totals[1].item())


def gather_rows(world: World, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Rows computed on shards split as `DistributedSampler(shuffle=False)` splits `n` items,
    gathered back in item order, on every process (the padding that evened the shards dropped)."""
    if not world.parallel:
        return rows
    mine = rows.to(world.comm_device).contiguous()
    parts = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(parts, mine)
    # Shard r holds items r, r + size, r + 2·size…: interleaving the shards restores the order.
    return torch.stack(parts, dim=1).flatten(0, 1)[:n].to(rows.device)


def split_work(world: World, items: list, compute: Callable[[list], torch.Tensor]) -> torch.Tensor:
    """`compute(items)` (one row per item), each process computing a shard of the items, every
    process getting all the rows."""
    if not world.parallel:
        return compute(items)
    part = [items[i] for i in DistributedSampler(items, world.size, world.rank, shuffle=False)]
    return gather_rows(world, compute(part), len(items))


def record_shards(world: World, feed: BatchFeed, run_dir: Path | None, epoch: int) -> None:
    """Rank 0 adds this epoch's shards to distributed.json: the images each process trained on
    (the orders the training feed served, gathered) and how many were distinct across
    processes."""
    if not world.parallel:
        return
    served = feed.served.to(world.comm_device)
    parts = [torch.empty_like(served) for _ in range(world.size)]
    dist.all_gather(parts, served)
    if not world.is_main or run_dir is None:
        return
    path = Path(run_dir) / RECORD
    record = json.loads(path.read_text()) if path.exists() and epoch > 1 else None
    record = record or {
        "processes": world.size,
        "backend": world.backend,
        "device": str(world.comm_device),
        "batch_per_process": feed.step_size,
        "train_images": len(feed.images),
        "epochs": [],
    }
    record["epochs"] = [e for e in record["epochs"] if e["epoch"] < epoch]
    record["epochs"].append(
        {
            "epoch": epoch,
            "images_per_process": [len(p) for p in parts],
            "distinct": int(torch.cat(parts).unique().numel()),
        }
    )
    runs.write_json(path, record)
