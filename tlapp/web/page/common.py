"""Pieces every step of the page uses: hints under the widgets, readable errors, image grids."""

from __future__ import annotations

import functools

import gradio as gr

from ... import runs
from ...catalogue import ModelError
from ...data import DataError

HINTS = {
    "freeze": "How much of the pretrained model to keep as it is. Frozen stages keep what they "
    "learnt from a million photos and train faster; 0 retrains every layer, the maximum only "
    "the new last layer (the head). With few images, freeze more.",
    "weights": "auto: start from weights pretrained on ImageNet when they can be downloaded or are "
    "cached; offline, the model starts from random weights (you will be warned) and "
    "needs many more images. none: always random. A file: start from your own weights.",
    "epochs": "One epoch shows every training image once. 5–10 is usually enough for a pretrained model.",
    "img_size": "Images are resized to this square size. Smaller is faster; 224 suits most models.",
    "batch_size": "Images per training step. Lower it if you run out of memory.",
    "lr": "How big each learning step is. The default suits fine-tuning; lower it if training diverges.",
    "val_fraction": "Share of each class used to choose the best epoch (ignored when your data has a val/ folder).",
    "test_fraction": "Share of each class never trained on nor used for choosing: the accuracy to expect on new images (ignored when your data has a test/ folder; 0: none).",
    "augment": "Flips and slight colour changes, so the model sees more variety. Off by default: on short fine-tuning it cost accuracy on every set we measured.",
    "balance": "Make rare classes count as much as common ones: they weigh more in training, and "
    "the kept epoch is the one that finds each class best on average. Automatic: when one class "
    "has 5 times the images of another.",
    "time_budget": "The whole run, images read and model trained, within this time: the app "
    "measures this machine first and chooses how much of the model to train and for how many "
    "epochs. Automatic: 2 minutes on a CPU, 10 on a GPU.",
}


def user_errors(fn):
    """Show expected problems as a readable message on the page, never as a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ModelError, runs.RunError, ValueError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as err:
            raise gr.Error(
                f"Something went wrong ({type(err).__name__}: {err}). "
                "Try again; if it keeps happening, restart the app."
            ) from None

    return wrapper


def image_gallery(label: str, elem_id: str, columns: int, height: int, **kwargs) -> gr.Gallery:
    """A grid of thumbnails that keeps its column count however few images it shows."""
    return gr.Gallery(
        label=label,
        elem_id=elem_id,
        columns=columns,
        height=height,
        fit_columns=False,
        object_fit="contain",
        **kwargs,
    )
