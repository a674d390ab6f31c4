"""Step 1, second tab: classes made in the browser, no folder needed (the workshop path, as in
Teachable Machine). Name a class, drop images on it or take them with the webcam, see its
thumbnails and count, rename or delete it; each change loads the set as the data to train on.

The set lives in the session's folder (`tlapp.web.class_set`), never in the page's globals.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr

from ...data import DataError
from ...views import GALLERY_LIMIT, thumbnail
from ..class_set import ClassSet
from ..sessions import Session, SessionRegistry
from ..uploads import split_dataset, upload_bytes
from .common import image_gallery, user_errors

HOW = (
    "Name a class, then drop its images on it or take them with the webcam. Make two classes "
    "or more, each with a few images (ten or more is better); the model learns as soon as "
    "there are two."
)


def class_maker() -> dict:
    """The editor's layout; call inside its tab. `wire_classes` connects it."""
    gr.Markdown(HOW)
    with gr.Row(equal_height=True):
        name = gr.Textbox(
            label="New class", placeholder="e.g. cat", elem_id="class-name", scale=3, min_width=140
        )
        add = gr.Button("Add class", elem_id="class-add", scale=1, min_width=90)
    chosen = gr.Radio(
        label="Your classes (images in each): click one to add images to it",
        choices=[],
        elem_id="class-list",
        visible=False,
    )
    with gr.Column(visible=False, elem_id="class-editor") as editor:
        drop = gr.File(
            label="Drop images of this class here, or click to choose them",
            file_count="multiple",
            file_types=["image"],
            elem_id="class-drop",
            height=100,
        )
        camera = gr.Image(
            label="…or take one with the webcam",
            sources=["webcam"],
            type="filepath",
            image_mode=None,  # the capture as it is: the data step reads and checks it
            elem_id="class-webcam",
            height=200,
        )
        thumbs = image_gallery(
            "Images of this class", "class-thumbs", 6, 160, allow_preview=False, visible=False
        )
        with gr.Row(equal_height=True):
            new_name = gr.Textbox(label="Rename it to", elem_id="class-rename", min_width=140)
            rename = gr.Button("Rename", elem_id="class-rename-btn", size="sm", min_width=80)
            delete = gr.Button(
                "Delete this class", variant="stop", elem_id="class-delete", size="sm", min_width=80
            )
    return {
        "name": name,
        "add": add,
        "chosen": chosen,
        "editor": editor,
        "drop": drop,
        "camera": camera,
        "thumbs": thumbs,
        "new_name": new_name,
        "rename": rename,
        "delete": delete,
    }


def class_set(state: Session) -> ClassSet:
    return ClassSet(state.workdir / "classes")


def class_views(classes: ClassSet, selected: str | None) -> tuple:
    """The list with counts, the editor of the selected class, its thumbnails, and the boxes
    emptied for the next name and drop."""
    counts = classes.counts()
    selected = selected if selected in counts else None
    choices = [(f"{name} · {n} image{'s' * (n != 1)}", name) for name, n in counts.items()]
    images = classes.images(selected) if selected else []
    items = [(thumbnail(str(p), 128), p.name) for p in images[:GALLERY_LIMIT]]
    return (
        gr.Radio(choices=choices, value=selected, visible=bool(counts)),
        gr.Column(visible=selected is not None),
        gr.Gallery(value=items, visible=bool(items)),
        gr.Textbox(value=selected or ""),
        gr.Textbox(value=""),
        None,
    )


def _editing(registry: SessionRegistry, change, clear_camera: bool = False):
    """A handler that applies `change(state, classes, selected, given)` (which returns the
    class to select afterwards) to the visitor's set and redraws the editor; after a capture,
    it empties the webcam box for the next one. (Only then: emptying it is a change event of
    its own, which would read the list's selection before this answer has set it.)"""

    @user_errors
    def edit(state: Session | None, selected: str | None, given):
        state = state or Session.new(registry.settings)
        classes = class_set(state)
        selected = change(state, classes, selected, given)
        cleared = (None,) if clear_camera else ()
        return (state, *class_views(classes, selected), *cleared)

    return edit


def _add_class(state, classes, selected, name):
    return classes.add(name)


def _rename(state, classes, selected, new_name):
    return classes.rename(selected, new_name)


def _delete(state, classes, selected, _):
    classes.delete(selected)
    return None


def _choose(state, classes, selected, _):
    return selected


def _adder(registry: SessionRegistry):
    """Images dropped or captured, into the selected class, within the machine's limits."""

    def add(state, classes, selected, files):
        files = [files] if isinstance(files, str) else [f for f in files or [] if f]
        if not files:
            return selected  # the box was emptied: nothing to add
        if not selected:
            raise DataError("Choose a class first (click its name in the list), then add images.")
        registry.make_room(state, upload_bytes(files))
        classes.add_images(selected, files, registry.settings.limits)
        return selected

    return add


def _load_classes(registry: SessionRegistry):
    """After each change: the set as the data to train on, once it has two classes with
    images; before that, a line saying what is missing (the data loaded before stays)."""

    @user_errors
    def load(state: Session | None, val_fraction: float, test_fraction: float):
        from .data import loaded_views

        if state and state.original and _same(class_set(state), state.original.root):
            return state, *(gr.update() for _ in range(4))  # nothing changed (a box emptied)
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
    """Every edit redraws the editor, then loads the set; returns the load events, after
    which the data step shows its tables."""
    views = [ui["chosen"], ui["editor"], ui["thumbs"], ui["new_name"], ui["name"], ui["drop"]]
    outputs = [session, *views]
    load = _load_classes(registry)
    edits = [
        (ui["add"].click, _add_class, ui["name"], "add_class"),
        (ui["name"].submit, _add_class, ui["name"], None),
        (ui["drop"].upload, _adder(registry), ui["drop"], "add_class_images"),
        (ui["camera"].change, _adder(registry), ui["camera"], None),
        (ui["rename"].click, _rename, ui["new_name"], "rename_class"),
        (ui["delete"].click, _delete, ui["chosen"], "delete_class"),
    ]
    loads = []
    for trigger, change, given, api_name in edits:
        named = {"api_name": api_name} if api_name else {"api_visibility": "private"}
        capture = given is ui["camera"]
        handler = _editing(registry, change, clear_camera=capture)
        answers = [*outputs, ui["camera"]] if capture else outputs
        event = trigger(handler, [session, ui["chosen"], given], answers, **named)
        loads.append(
            event.success(load, [session, *shares], data_outputs, api_visibility="private")
        )
    ui["chosen"].input(
        _editing(registry, _choose),
        [session, ui["chosen"], ui["chosen"]],
        outputs,
        api_visibility="private",
    )
    return loads
