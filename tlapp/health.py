"""Data health before training: duplicates, leakage, imbalance, tiny images, grey among colour.

    findings = check_health(dataset)     # a table: finding, detail, paths (the images concerned)

Exact duplicates share the same bytes; near duplicates share a perceptual difference hash
(dHash: 64 bits from a 9x8 grey thumbnail) within a few bits, so a resized or re-saved copy is
still found. A duplicate group that spans train and validation (or test) is leakage: the
validation score then measures memory, not learning.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .data import Dataset, ImageError, file_hash, open_image

NEAR_BITS = 6  # dHash distance at or below which two images are compared closely
NEAR_PIXELS = 6.0  # mean grey difference (0-255) of 16x16 thumbnails, below which they match
PAIRWISE_LIMIT = 6000  # above this many images, only identical dHashes are compared
TINY = 32  # pixels on the shorter side
COLUMNS = ["finding", "detail", "paths"]


def fingerprint(path: str) -> tuple[int, bool, np.ndarray]:
    """(64-bit dHash, whether the picture is grey, a 16x16 grey thumbnail) from one decode."""
    try:
        image = open_image(path, draft_size=64).resize((64, 64))
    except ImageError:
        return 0, False, np.zeros(256, dtype=np.uint8)
    rgb = np.asarray(image, dtype=np.int16)
    grey = (
        int(np.abs(rgb[..., 0] - rgb[..., 1]).max()) <= 3
        and int(np.abs(rgb[..., 1] - rgb[..., 2]).max()) <= 3
    )
    small = np.asarray(image.convert("L").resize((9, 8)), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    thumb = np.asarray(image.convert("L").resize((16, 16)), dtype=np.uint8).flatten()
    return int(np.packbits(bits).view(">u8")[0]), grey, thumb


def fingerprints(paths: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        hashes = list(pool.map(file_hash, paths))
        prints = list(pool.map(fingerprint, paths))
    dhash = np.array([p[0] for p in prints], dtype=np.uint64)
    grey = np.array([p[1] for p in prints], dtype=bool)
    return hashes, dhash, grey, np.stack([p[2] for p in prints]).astype(np.int16)


def _groups(keys) -> list[list[int]]:
    by_key: dict = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return [g for g in by_key.values() if len(g) > 1]


def near_pairs(dhash: np.ndarray, thumbs: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs that look alike: dHashes within NEAR_BITS bits (candidates), confirmed by
    16x16 thumbnails within NEAR_PIXELS on average (dHash alone matches plain, low-detail
    pictures such as scans of digits far too often)."""
    if len(dhash) > PAIRWISE_LIMIT:
        candidates = [(g[0], j) for g in _groups(dhash.tolist()) for j in g[1:]]
    else:
        bits = np.unpackbits(dhash.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
        candidates = []
        for i in range(len(bits) - 1):
            distance = (bits[i + 1 :] != bits[i]).sum(axis=1)
            candidates += [(i, i + 1 + int(j)) for j in np.flatnonzero(distance <= NEAR_BITS)]
    return [(a, b) for a, b in candidates if np.abs(thumbs[a] - thumbs[b]).mean() <= NEAR_PIXELS]


def _merge(pairs: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Connected groups from pairs (union-find)."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    return [g for g in _groups([root(i) for i in range(n)])]


def check_health(dataset: Dataset) -> pd.DataFrame:
    """Every finding with a one-line detail and the paths of the images concerned."""
    samples = dataset.samples.reset_index(drop=True)
    if not len(samples):
        return pd.DataFrame(columns=COLUMNS)
    paths = samples["path"].tolist()
    hashes, dhash, grey, thumbs = fingerprints(paths)
    exact = _groups(hashes)
    exact_pairs = {(g[0], j) for g in exact for j in g[1:]}
    near = _merge(
        [
            p
            for p in near_pairs(dhash, thumbs)
            if p not in exact_pairs and hashes[p[0]] != hashes[p[1]]
        ],
        len(paths),
    )
    rows = []
    for kind, groups in (("exact duplicates", exact), ("near duplicates", near)):
        for g in groups:
            labels = sorted(set(samples.loc[g, "label"]))
            clash = f"; labelled differently: {', '.join(labels)}" if len(labels) > 1 else ""
            rows.append((kind, f"{len(g)} copies of one picture{clash}", [paths[i] for i in g]))
            if samples.loc[g, "split"].nunique() > 1:
                rows.append(
                    (
                        "leakage",
                        f"the same picture is in {', '.join(sorted(set(samples.loc[g, 'split'])))}: "
                        "validation would reward memory",
                        [paths[i] for i in g],
                    )
                )
    rows += _imbalance(samples)
    small = samples[np.minimum(samples["width"], samples["height"]) < TINY]
    if len(small):
        rows.append(
            (
                "very small images",
                f"{len(small)} images under {TINY} pixels on a side",
                small["path"].tolist(),
            )
        )
    if 0 < grey.sum() < len(grey):
        rows.append(
            (
                "grey among colour",
                f"{int(grey.sum())} greyscale images among "
                f"{int((~grey).sum())} colour ones: is colour part of the label?",
                [p for p, g in zip(paths, grey) if g],
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _imbalance(samples: pd.DataFrame) -> list[tuple]:
    counts = samples[samples["split"] == "train"]["label"].value_counts()
    if len(counts) < 2 or counts.min() * 3 > counts.max():
        return []
    rare, common = counts.idxmin(), counts.idxmax()
    detail = (
        f"'{rare}' has {counts.min()} training images and '{common}' {counts.max()}: add "
        "images to the rare classes, or turn on 'Balance classes'"
    )
    rare_classes = counts[counts * 3 <= counts.max()].index
    return [
        ("class imbalance", detail, samples[samples["label"].isin(rare_classes)]["path"].tolist())
    ]
