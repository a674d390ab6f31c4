"""Finding copies of one picture: the same bytes, or the same picture re-saved or resized.

    prints = fingerprints(paths)           # one small decode per image
    exact, near = duplicate_groups(prints) # lists of index groups
    group = split_groups(prints)           # a group number per image, for the split

Exact duplicates share the same bytes; near duplicates share a perceptual difference hash
(dHash: 64 bits from a 9x8 grey thumbnail) within a few bits, confirmed on a 16x16 thumbnail,
so a resized or re-saved copy is still found. The health check reports both; the split keeps
each group on one side, so that validation does not reward memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .hashes import file_hashes
from .images import in_threads, open_image

NEAR_BITS = 6  # dHash distance at or below which two images are compared closely
NEAR_PIXELS = 6.0  # mean grey difference (0-255) of 16x16 thumbnails, below which they match
PAIRWISE_LIMIT = 6000  # above this many images, only identical dHashes are compared


@dataclass
class Prints:
    """What is compared, per image: bytes hash, dHash, greyness, a 16x16 grey thumbnail."""

    hashes: list[str]
    dhash: np.ndarray  # uint64
    grey: np.ndarray  # bool
    thumbs: np.ndarray  # int16, one row of 256 per image


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


def fingerprints(paths: list[str], progress=None) -> Prints:
    """Every image's prints; `progress(what, done, total)` hears of the hashing and decoding."""
    if not paths:
        return Prints([], np.zeros(0, np.uint64), np.zeros(0, bool), np.zeros((0, 256), np.int16))
    hashes = file_hashes(paths, progress)
    prints = in_threads(fingerprint, paths, "Finding duplicates", progress)
    return Prints(
        hashes=hashes,
        dhash=np.array([p[0] for p in prints], dtype=np.uint64),
        grey=np.array([p[1] for p in prints], dtype=bool),
        thumbs=np.stack([p[2] for p in prints]).astype(np.int16),
    )


def groups_by(keys) -> list[list[int]]:
    """Indices sharing a key, for every key held more than once."""
    by_key: dict = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return [g for g in by_key.values() if len(g) > 1]


def near_pairs(dhash: np.ndarray, thumbs: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs that look alike: dHashes within NEAR_BITS bits (candidates), confirmed by
    16x16 thumbnails within NEAR_PIXELS on average (dHash alone matches plain, low-detail
    pictures such as scans of digits far too often)."""
    if len(dhash) > PAIRWISE_LIMIT:
        candidates = [(g[0], j) for g in groups_by(dhash.tolist()) for j in g[1:]]
    else:
        bits = np.unpackbits(dhash.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
        candidates = []
        for i in range(len(bits) - 1):
            distance = (bits[i + 1 :] != bits[i]).sum(axis=1)
            candidates += [(i, i + 1 + int(j)) for j in np.flatnonzero(distance <= NEAR_BITS)]
    return [(a, b) for a, b in candidates if np.abs(thumbs[a] - thumbs[b]).mean() <= NEAR_PIXELS]


def _roots(pairs: list[tuple[int, int]], n: int) -> list[int]:
    """The group each index falls in when the pairs are joined (union-find)."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    return [root(i) for i in range(n)]


def duplicate_groups(prints: Prints) -> tuple[list[list[int]], list[list[int]]]:
    """(exact groups, near groups): a near group joins pictures whose bytes differ."""
    hashes = prints.hashes
    exact = groups_by(hashes)
    near = [(a, b) for a, b in near_pairs(prints.dhash, prints.thumbs) if hashes[a] != hashes[b]]
    return exact, groups_by(_roots(near, len(hashes)))


def split_groups(prints: Prints) -> list[int]:
    """A group number per image: copies (exact or near) share one, every other image has its own."""
    exact, near = duplicate_groups(prints)
    pairs = [(g[0], j) for groups in (exact, near) for g in groups for j in g[1:]]
    return _roots(pairs, len(prints.hashes))
