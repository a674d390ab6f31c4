"""Backbones: the catalogue, weight resolution and freezing by timm's own stages."""

import importlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import timm
import torch
from safetensors.torch import save_file

from tlapp import models
from tlapp.models import ModelError, apply_freeze, build_model, freeze_plan, stages

REQUIRED = [
    "resnet18",
    "resnet50",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_small_patch16_224",
    "mobilenetv4_conv_small",
]


def test_catalogue_lists_the_required_backbones_with_parameter_counts():
    choices = dict((value, label) for label, value in models.catalog_choices())
    assert set(REQUIRED) <= set(choices)
    assert "11.7M params" in choices["resnet18"]
    assert "25.6M params" in choices["resnet50"]


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(ModelError, match="resnet18"):
        models.check_name("resnet1")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", ["stem: conv1 + bn1", "layer1", "layer2", "layer3", "layer4"]),
        (
            "test_vit",
            [
                "stem: cls_token + pos_embed + patch_embed",
                "blocks.0",
                "blocks.1",
                "blocks.2",
                "blocks.3",
                "blocks.4",
                "blocks.5 + norm",
            ],
        ),
        ("mobilenetv4_conv_small", None),
    ],
)
def test_stages_follow_timm_groups_and_leave_the_classifier_out(name, expected):
    model, _ = build_model(name, 4, "none")
    found = stages(model)
    if expected:
        assert [s.label for s in found] == expected
    head = set(models.classifier_keys(model))
    assert head and not head & {p for s in found for p in s.params}
    assert {p for s in found for p in s.params} | head == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_efficientnet", "test_convnext"])
@pytest.mark.parametrize("depth", [0, 2, "all"])
def test_trainable_count_as_shown_matches_the_model(name, depth):
    model, _ = build_model(name, 3, "none")
    plan = freeze_plan(model, depth)
    apply_freeze(model, plan)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == plan.trainable
    assert f"{plan.trainable:,} of {plan.total:,}" in plan.describe()
    preview = models.preview_freeze(name, depth, 3)
    assert (preview.trainable, preview.total, preview.depth) == (
        plan.trainable,
        plan.total,
        plan.depth,
    )
    if depth == "all":
        head = set(models.classifier_keys(model))
        assert {n for n, p in model.named_parameters() if p.requires_grad} == head


def test_freeze_depth_out_of_range_is_a_clear_error():
    model, _ = build_model("test_resnet", 3, "none")
    with pytest.raises(ModelError, match="0 to 5"):
        freeze_plan(model, 9)
    with pytest.raises(ModelError, match="number"):
        freeze_plan(model, "some")


def test_offline_auto_falls_back_loudly_and_strict_pretrained_fails():
    model, weights = build_model("test_resnet", 3, "auto")
    assert weights.kind == "random"
    note = weights.note
    assert note.startswith("RANDOM INITIALISATION") and "could not be had" in note
    with pytest.raises(ModelError, match="could not be loaded"):
        build_model("test_resnet", 3, "pretrained")


@pytest.mark.parametrize("weights", ["auto", "pretrained"])
def test_an_old_huggingface_hub_is_said_never_a_silent_random_start(monkeypatch, weights):
    """huggingface_hub before 1.2.1 has no constants.is_offline_mode: weights 'auto' must not
    fall back to random weights as if merely offline, but say what to install."""
    from huggingface_hub import constants

    monkeypatch.delattr(constants, "is_offline_mode")
    with pytest.raises(ModelError, match=r"too old .* pip install -U 'huggingface_hub>=1\.2\.1'"):
        build_model("test_resnet", 3, weights)
    monkeypatch.undo()
    assert build_model("test_resnet", 3, "auto")[1].kind == "random"  # offline here: fallback


@pytest.fixture
def hub_settings(monkeypatch):
    """huggingface_hub's settings read again from the environment, as a user who sets HF_ENDPOINT
    (a mirror) and no HF_HUB_OFFLINE has them; the tests' own settings come back afterwards."""
    from huggingface_hub import constants

    def use(endpoint: str) -> None:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        importlib.reload(constants)

    yield use
    monkeypatch.undo()
    importlib.reload(constants)


class _Mirror(BaseHTTPRequestHandler):
    asked: list[str] = []

    def do_HEAD(self):
        self.asked.append(self.path)
        self.send_response(302)  # as the hub answers for weights: a redirect to its CDN
        self.send_header("Location", "http://cdn.invalid/weights")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_hub_check_asks_the_endpoint_huggingface_hub_is_set_to(hub_settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Mirror.asked = []
    try:
        hub_settings(f"http://127.0.0.1:{server.server_port}")
        assert models._hub_reachable("timm/test_resnet.r160_in1k")
    finally:
        server.shutdown()
        server.server_close()
    assert _Mirror.asked == ["/timm/test_resnet.r160_in1k/resolve/main/model.safetensors"]


def test_the_hub_check_is_quick_when_nothing_answers(hub_settings):
    with socket.socket() as closed:  # a port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    hub_settings(f"http://127.0.0.1:{port}")
    start = time.monotonic()
    assert not models._hub_reachable("timm/test_resnet.r160_in1k")
    model, weights = build_model("test_resnet", 3, "auto")  # falls back to random weights
    assert weights.fell_back and time.monotonic() - start < 5

    with socket.socket() as silent:  # accepts connections, never answers: the timeout ends it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hub_settings(f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        assert not models._hub_reachable("timm/test_resnet.r160_in1k", timeout=0.5)
        assert time.monotonic() - start < 2


def test_offline_mode_asks_nothing(monkeypatch):
    """HF_HUB_OFFLINE (set for every test) means no request at all."""
    import huggingface_hub

    def no_session():
        raise AssertionError("the hub was asked while offline")

    monkeypatch.setattr(huggingface_hub, "get_session", no_session)
    assert not models._hub_reachable("timm/test_resnet.r160_in1k")


def _donor(tmp_path):
    donor = timm.create_model("test_resnet", num_classes=7)
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_()
    return donor


@pytest.mark.parametrize("kind", ["safetensors", "pth", "run folder"])
def test_backbone_weights_load_from_a_file_or_run_with_a_fresh_head(tmp_path, kind):
    donor = _donor(tmp_path)
    state = donor.state_dict()
    if kind == "safetensors":
        source = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, source)
    elif kind == "pth":
        source = tmp_path / "w.pth"
        torch.save({"state_dict": state, "epoch": 3}, source)
    else:
        source = tmp_path / "run"
        source.mkdir()
        save_file({k: v.contiguous() for k, v in state.items()}, source / "model.safetensors")
        (source / "config.json").write_text(json.dumps({"arch": "test_resnet"}))
    model, weights = build_model("test_resnet", 3, str(source))
    assert weights.kind == "file" and "new head" in weights.note
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert model.fc.out_features == 3


def test_weights_for_another_architecture_are_refused(tmp_path):
    save_file(
        {k: v.contiguous() for k, v in timm.create_model("test_vit").state_dict().items()},
        tmp_path / "vit.safetensors",
    )
    with pytest.raises(ModelError, match="does not fit"):
        build_model("test_resnet", 3, str(tmp_path / "vit.safetensors"))
    with pytest.raises(ModelError, match="neither"):
        build_model("test_resnet", 3, str(tmp_path / "nothing-here"))
