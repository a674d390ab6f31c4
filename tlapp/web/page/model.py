"""Step 2 of the page: the backbone (in the main column), its starting weights and how much
of it to freeze (in the advanced panel).

The sentence under the freeze slider comes from the model (timm), which loads after the page is
served: `preselect_freeze` writes it when the page opens (`build_ui` wires it to the page's load).
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


def preselect_freeze(choice: str, custom: str, session: Session | None):
    """The page's choice for a newly chosen model: all stages frozen but the last, so the
    head and the last stage learn. Few images and a CPU are the usual case here, and training
    the last stage only is quicker and steadier than all of them; the engine's own default
    (the CLI's) is unchanged."""
    from ... import models

    try:
        stages = len(models.preview_freeze(model_name(choice, custom), 0).stages)
    except (ModelError, ValueError):
        return freeze_view(choice, custom, 0, session)
    return freeze_view(choice, custom, max(stages - 1, 0), session)


def model_step() -> dict:
    """The backbone, in the main column; the rest of the model's settings go in the advanced
    panel (`model_settings`)."""
    choice = gr.Dropdown(
        catalog_choices(),
        value=DEFAULT_MODEL,
        label="Model to start from (already trained on a million photos)",
        elem_id="model",
    )
    return {"choice": choice}


def wire_model(session: gr.State, ui: dict) -> None:
    ui["weights"].change(
        lambda m: gr.Column(visible=m == "from a file"), ui["weights"], ui["file_box"]
    )
    named = [ui["choice"], ui["custom"], session]
    shown = [ui["freeze"], ui["freeze_note"]]
    for trigger in (ui["choice"].change, ui["custom"].submit):
        trigger(preselect_freeze, named, shown, show_progress="hidden")
    inputs = [ui["choice"], ui["custom"], ui["freeze"], session]
    # Leaving the box without Enter: the sentence for the name typed, the depth as it is.
    ui["custom"].blur(freeze_view, inputs, shown, show_progress="hidden")
    ui["freeze"].input(
        lambda *a: freeze_view(*a)[1], inputs, ui["freeze_note"], show_progress="hidden"
    )


def model_settings(settings: AppSettings) -> dict:
    """The model's advanced settings: any timm name, the starting weights, the freeze depth."""
    gr.Markdown("**Model**")
    custom = gr.Textbox(
        label="Any timm model name instead (press Enter)",
        placeholder="e.g. resnet34",
        elem_id="custom-model",
    )
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
    stages = STAGES[DEFAULT_MODEL]  # the note needs timm: `preselect_freeze` writes it on load
    freeze = gr.Slider(
        0,
        stages,
        value=stages - 1,
        step=1,
        elem_id="freeze",
        label=f"Freeze depth (0–{stages} stages)",
        info=HINTS["freeze"],
    )
    freeze_note = gr.Markdown(elem_id="freeze-note")
    return {
        "custom": custom,
        "weights": weights,
        "file_box": file_box,
        "weights_file": weights_file,
        "weights_path": weights_path,
        "freeze": freeze,
        "freeze_note": freeze_note,
    }
