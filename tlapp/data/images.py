"""Opening one image file safely; the only place images are decoded from user files.

    image = open_image("photo.jpg")        # 8-bit RGB, EXIF orientation applied, or ImageError
    size, mode = probe_image("photo.jpg")  # header only, no decoding

`open_image` applies EXIF orientation, flattens alpha onto white, scales 16-bit greyscale and
always returns an 8-bit RGB image.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

# Still-image formats we decode; anything else (PSD, EPS, exotic plugins) is refused.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 50_000_000  # ~7000x7000; larger files are skipped before decoding
MAX_ASPECT = 20  # a 1000x1 strip would become a huge tensor once its short side is resized up

# Pillow registers its formats on the first Image.open, and not safely when several threads make
# that first call at once (the app's visitors): some then see no format and refuse a good image.
# Registering them here, once, on import, leaves nothing for the threads to race over.
Image.init()


# ----------------------------------------------------------------------------- images
def open_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Open one image as 8-bit RGB, or raise ImageError with a readable reason.

    `draft_size` lets JPEG decode at a reduced scale when the result will be resized anyway.
    """
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"too large ({im.width}x{im.height} pixels)")
            if max(im.size) > MAX_ASPECT * max(1, min(im.size)):
                raise ImageError(f"too long and thin ({im.width}x{im.height} pixels)")
            if draft_size and im.format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError("too large (decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"cannot be decoded ({err})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha is flattened onto white, 16-bit is rescaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0) if im.mode == "F" else 255.0)
        im = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def probe_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[int, int, str]:
    """Decode a file once to prove it is usable; returns (width, height, mode) as stored."""
    with Image.open(path, formats=ALLOWED_FORMATS) as im:
        size, mode = im.size, im.mode
    open_image(path, max_pixels, draft_size=64)  # full decode at reduced scale catches truncation
    return size[0], size[1], mode


def _probe_all(
    paths: list[str], max_pixels: int = MAX_IMAGE_PIXELS, progress=None
) -> list[tuple | str]:
    """Probe many files in parallel (Pillow releases the GIL while decoding);
    `progress(what, done, total)` hears of it."""

    def one(p):
        try:
            return probe_image(p, max_pixels)
        except ImageError as err:
            return str(err)
        except Image.DecompressionBombError:
            return "too large (decompression bomb)"
        except (OSError, Image.UnidentifiedImageError):
            return "not an image Pillow can read"

    return in_threads(one, paths, "Scanning images", progress)


def in_threads(function, items: list, what: str, progress=None, every: int = 64) -> list:
    """`function` of every item, in threads, in order; `progress(what, done, total)` hears of
    every `every` items done and of the last."""
    results = []
    with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        for result in pool.map(function, items):
            results.append(result)
            if progress and (len(results) % every == 0 or len(results) == len(items)):
                progress(what, len(results), len(items))
    return results
