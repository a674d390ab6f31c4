"""Turn what the user gave (a folder, a zip, a CSV, a browser's upload) into a labelled, split
dataset with a report; safe image opening lives here and only here.

    ds = load_dataset("photos/", val_fraction=0.2, seed=0)
    ds.report(); ds.skipped; ds.check()

| module | what it holds |
|---|---|
| `images` | opening one image file safely, probing its header |
| `hashes` | content hashes of files, remembered by (path, size, mtime) in the cache folder |
| `listing` | the supported layouts (class folders, train/val folders, CSV) → (path, label, split) |
| `uploads` | zips and browser uploads, unpacked within `Limits` |
| `duplicates` | copies of one picture (same bytes, or re-saved/resized), for the split and the health check |
| `dataset` | `Dataset`, `load_dataset`, the split (copies kept on one side), `Corrections` made on the page |
"""

from .dataset import SPLITS, TEST_FRACTION, Corrections, Dataset, config_dataset, load_dataset
from .errors import DataError, ImageError
from .hashes import default_cache_dir, file_hash, file_hashes
from .images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, open_image, probe_image, to_rgb
from .listing import find_data_root, image_files
from .uploads import Limits, assemble_upload, extract_zip, safe_destination

__all__ = [
    "SPLITS",
    "TEST_FRACTION",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "Corrections",
    "DataError",
    "Dataset",
    "ImageError",
    "Limits",
    "assemble_upload",
    "config_dataset",
    "default_cache_dir",
    "extract_zip",
    "file_hash",
    "file_hashes",
    "find_data_root",
    "image_files",
    "load_dataset",
    "open_image",
    "probe_image",
    "safe_destination",
    "to_rgb",
]
