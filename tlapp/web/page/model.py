"""Step 2 of the page: the backbone, its starting weights and how much of it to freeze.

The sentence under the freeze slider comes from the model (timm), which loads after the page is
served: `freeze_view` writes it when the page opens (`build_ui` wires it to the page's load).
"""

from __future__ import annotations

import gradio as gr

from ...catalogue import STAGES, ModelError, catalog_choices
from ...config import DEFAULT_MODEL
from ..sessions import Session
from ..settings import AppSettings
from .common import HINTS


def model_name(choice: str, custom: str) -> str:
    # Imported here: the page is served before torch and timm load (a background thread loads
    # them just after).
    from ... import models

    return models.check_name(custom.strip() if custom and custom.strip() else choice)


def freeze_view(choice: str, custom: str, depth: float, session: Session | None):
    """Slider range and the sentence under it, for the chosen model (built on the meta device)."""
    from ... import models

    classes = len(session.dataset.classes) if session and session.dataset else 2
    try:
        plan = models.preview_freeze(model_name(choice, custom), int(depth or 0), classes)
    except ModelError as err:
        return gr.Slider(), f"**Problem:** {err}"
    except ValueError:
        plan = models.preview_freeze(model_name(choice, custom), "all", classes)
    slider = gr.Slider(
        maximum=len(plan.stages),
        value=plan.depth,
        label=f"Freeze depth (0–{len(plan.stages)} stages)",
    )
    return slider, plan.describe()


def model_step(settings: AppSettings, session: gr.State) -> dict:
    gr.Markdown("## 2 · Model", elem_classes="tl-step")
    ui = _layout(settings)
    ui["weights"].change(
        lambda m: gr.Column(visible=m == "from a file"), ui["weights"], ui["file_box"]
    )
    inputs = [ui["choice"], ui["custom"], ui["freeze"], session]
    for trigger in (ui["choice"].change, ui["custom"].submit, ui["custom"].blur):
        trigger(freeze_view, inputs, [ui["freeze"], ui["freeze_note"]], show_progress="hidden")
    ui["freeze"].input(
        lambda *a: freeze_view(*a)[1], inputs, ui["freeze_note"], show_progress="hidden"
    )
    return ui


def _layout(settings: AppSettings) -> dict:
    with gr.Row():
        choice = gr.Dropdown(
            catalog_choices(),
            value=DEFAULT_MODEL,
            label="Backbone (pretrained network to start from)",
            elem_id="model",
            scale=3,
        )
        custom = gr.Textbox(
            label="…or any timm model name",
            placeholder="e.g. resnet34",
            elem_id="custom-model",
            scale=2,
        )
    with gr.Row():
        weights = gr.Radio(
            ["auto", "pretrained", "none", "from a file"],
            value="auto",
            label="Starting weights",
            info=HINTS["weights"],
            elem_id="weights",
        )
        with gr.Column(visible=False) as file_box:
            weights_file = gr.File(
                label="Weights (.safetensors / .pth)",
                file_types=[".safetensors", ".pth", ".pt"],
                height=100,
            )
            weights_path = gr.Textbox(
                label="…or a weights file or earlier run folder on this computer",
                visible=settings.allow_local_paths,
            )
    stages = STAGES[DEFAULT_MODEL]  # the note needs timm: `freeze_view` writes it on page load
    freeze = gr.Slider(
        0,
        stages,
        value=0,
        step=1,
        elem_id="freeze",
        label=f"Freeze depth (0–{stages} stages)",
        info=HINTS["freeze"],
    )
    freeze_note = gr.Markdown(elem_id="freeze-note")
    return {
        "choice": choice,
        "custom": custom,
        "weights": weights,
        "file_box": file_box,
        "weights_file": weights_file,
        "weights_path": weights_path,
        "freeze": freeze,
        "freeze_note": freeze_note,
    }
