"""The two kinds of data problem, each a sentence meant for the user."""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be used; the message is one sentence meant for the user."""


class ImageError(ValueError):
    """One file cannot be used as an image; the message is the reason shown to the user."""
