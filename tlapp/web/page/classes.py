"""Step 1, second tab: classes made in the browser, no folder needed (the workshop path, as in
Teachable Machine). Name a class and it gets a card: drop images on the card or take them with
the webcam, see its thumbnails and count, rename or delete it; each change loads the set as the
data to train on.

The set lives in the session's folder (`tlapp.web.class_set`), never in the page's globals.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from ...views import GALLERY_LIMIT, thumbnail
from ..class_set import ClassSet
from ..sessions import Session, SessionRegistry
from ..uploads import split_dataset, upload_bytes
from .common import image_gallery, user_errors

HOW = (
    "Name a class, then drop its images on its card or take them with the webcam. Make two "
    "classes or more, each with a few images (ten or more is better); the model learns as soon "
    "as there are two."
)


def class_maker(registry: SessionRegistry, session: gr.State) -> dict:
    """The editor, in its tab: a box to name a class, then one card per class, drawn again
    whenever the classes or their counts change. `wire_classes` connects the rest."""
    gr.Markdown(HOW)
    with gr.Row(equal_height=True):
        name = gr.Textbox(
            label="New class", placeholder="e.g. cat", elem_id="class-name", scale=3, min_width=140
        )
        add = gr.Button("Add class", elem_id="class-add", scale=1, min_width=90)
    counts = gr.State({})  # {class: images}: the cards are drawn from it

    @gr.render(inputs=[session, counts], triggers=[counts.change])
    def cards(state: Session | None, shown: dict):
        if state is None or not shown:
            return
        with gr.Column(elem_id="class-cards"):
            for i, name in enumerate(shown):
                _card(registry, session, counts, state, i, name)

    return {"name": name, "add": add, "counts": counts}


def _card(registry: SessionRegistry, session: gr.State, counts: gr.State, state, i: int, name: str):
    """One class's card, its every change going to this class and nowhere else. Its events
    answer only the counts: the load that follows is wired outside the cards, as a card's
    events end with the card (a chained step would call a function the next drawing removed)."""
    drop, camera, new_name, rename, delete = _card_layout(class_set(state).images(name), i, name)
    edits = [
        (drop.upload, _adder(registry, name), drop),
        (camera.change, _adder(registry, name), camera),
        (rename.click, _renamer(name), new_name),
        (new_name.submit, _renamer(name), new_name),
        (delete.click, _deleter(name), None),
    ]
    for trigger, change, given in edits:
        inputs = [session] + ([given] if given is not None else [])
        trigger(_editing(registry, change), inputs, [session, counts], api_visibility="private")


def _card_layout(images: list[Path], i: int, name: str) -> tuple:
    """The card: name and count, thumbnails, a drop zone and the webcam side by side, and a
    row to rename or delete it; returns the parts that take input."""
    n = len(images)
    with gr.Column(variant="panel", elem_id=f"class-card-{i}", elem_classes="tl-class-card"):
        gr.Markdown(
            f"**{escape_markdown(name)}** · {n} image{'s' * (n != 1)}",
            elem_id=f"class-title-{i}",
            elem_classes="tl-card-title",
        )
        if images:
            image_gallery(
                f"Images of {name}",
                f"class-thumbs-{i}",
                8,
                110,
                allow_preview=False,
                show_label=False,
                value=[thumbnail(str(p), 128) for p in images[:GALLERY_LIMIT]],
            )
        with gr.Row(equal_height=True):
            drop = gr.File(
                label="Drop images here",
                file_count="multiple",
                file_types=["image"],
                elem_id=f"class-drop-{i}",
                height=170,
                min_width=150,
            )
            camera = gr.Image(
                label="Or the webcam",
                sources=["webcam"],
                type="filepath",
                image_mode=None,  # the capture as it is: the data step reads and checks it
                elem_id=f"class-webcam-{i}",
                height=170,
                min_width=150,
            )
        with gr.Row(equal_height=True):
            new_name = gr.Textbox(
                label=f"New name for {name}",
                show_label=False,
                placeholder=f"New name for {name}",
                container=False,
                elem_id=f"class-rename-{i}",
                min_width=120,
                scale=3,
            )
            rename = gr.Button("Rename", elem_id=f"class-rename-btn-{i}", size="sm", min_width=70)
            delete = gr.Button(
                "Delete", variant="stop", elem_id=f"class-delete-{i}", size="sm", min_width=70
            )
    return drop, camera, new_name, rename, delete


def escape_markdown(text: str) -> str:
    """A class name shown as it was typed: `my_cat_2` is not italics."""
    return "".join("\\" + c if c in "\\`*_[]()#+-.!~|" else c for c in text)


def class_set(state: Session) -> ClassSet:
    return ClassSet(state.workdir / "classes")


def _editing(registry: SessionRegistry, change, clear: bool = False):
    """A handler that applies `change(state, classes, given)` to the visitor's set and answers
    the counts the cards are drawn from (and, with `clear`, an emptied box for the next name)."""

    @user_errors
    def edit(state: Session | None, given=None):
        state = state or Session.new(registry.settings)
        classes = class_set(state)
        change(state, classes, given)
        return (state, classes.counts(), *(("",) if clear else ()))

    return edit


def _add_class(state, classes, name):
    classes.add(name)


def _renamer(name: str):
    return lambda state, classes, new_name: classes.rename(name, new_name)


def _deleter(name: str):
    return lambda state, classes, _=None: classes.delete(name)


def _adder(registry: SessionRegistry, name: str):
    """Images dropped or captured, into the class `name`, within the machine's limits."""

    def add(state, classes, files):
        files = [files] if isinstance(files, str) else [f for f in files or [] if f]
        if files:  # nothing when a box was emptied
            registry.make_room(state, upload_bytes(files))
            classes.add_images(name, files, registry.settings.limits)

    return add


def _load_classes(registry: SessionRegistry):
    """After each change: the set as the data to train on, once it has two classes with
    images; before that, a line saying what is missing (the data loaded before stays)."""

    @user_errors
    def load(state: Session | None, val_fraction: float, test_fraction: float):
        from .data import loaded_views

        if state and state.original and _same(class_set(state), state.original.root):
            # the set as loaded already (a class made and deleted again): nothing to redo
            return state, *(gr.update() for _ in range(4))
        if not state or not class_set(state).ready():
            counts = class_set(state).counts() if state else {}
            have = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none yet"
            line = f"**Classes made here:** {have}. Add two classes or more, each with images."
            return state, line, gr.update(), gr.update(), gr.update()
        root = class_set(state).snapshot(state.data_folder("classes"))
        previous = state.original.root if state.original else None
        state.use(
            split_dataset(root, (val_fraction, test_fraction), limits=registry.settings.limits)
        )
        _forget_snapshot(state, previous)
        return (state, *loaded_views(state))

    return load


def _same(classes: ClassSet, loaded_root: str) -> bool:
    """Whether the data loaded now is a snapshot of the set as it is."""
    return Path(loaded_root).name.startswith("classes-") and (
        ClassSet(Path(loaded_root)).listing() == classes.listing()
    )


def _forget_snapshot(state: Session, root: str | None) -> None:
    """Remove an earlier snapshot of the set, unless the session's run reads or read it."""
    if not root or Path(root).parent != state.workdir / "data":
        return
    if not Path(root).name.startswith("classes-"):
        return
    if state.job and str(state.job.config.data) == root:
        return
    shutil.rmtree(root, ignore_errors=True)


def wire_classes(
    registry: SessionRegistry, session: gr.State, ui: dict, shares: list, data_outputs: list
):
    """Adding a class updates the counts, as every card's edit does; each change of the counts
    draws the cards again and loads the set. Returns the load event, after which the data step
    shows its tables."""
    add = _editing(registry, _add_class, clear=True)
    outputs = [session, ui["counts"], ui["name"]]
    ui["add"].click(add, [session, ui["name"]], outputs, api_name="add_class")
    ui["name"].submit(add, [session, ui["name"]], outputs, api_visibility="private")
    return ui["counts"].change(
        _load_classes(registry), [session, *shares], data_outputs, api_visibility="private"
    )
