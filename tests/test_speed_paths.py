"""The fast paths give the same answers as the slow ones: decode once, cached embeddings."""

import threading

import numpy as np
import pytest
import torch
from conftest import colour_image
from PIL import Image

from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.geometry import eval_geometry
from tlapp.models import build_model
from tlapp.predict import eval_transform
from tlapp.train import Trainer
from tlapp.train.batches import BatchFeed, DecodedImages, prefetch, to_model_input
from tlapp.train.recipes import data_config

BASE = dict(
    recipe="one-phase",
    weights="none",
    img_size=48,
    batch_size=8,
    lr=5e-3,
    epochs=3,
    augment=False,
    precision="fp32",
)


def trainer(folder, tmp_path, **overrides) -> Trainer:
    config = make_config(
        data=str(folder),
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        **{**BASE, **overrides},
    )
    return Trainer(config, load_dataset(folder), tmp_path / "run", [], threading.Event())


def test_head_on_cached_embeddings_matches_the_head_fitted_without_the_cache(
    class_folder, tmp_path
):
    """The cache changes nothing: a head fitted on embeddings read back from disk is the head
    fitted on embeddings computed afresh."""
    trainer(class_folder, tmp_path, model="test_resnet", freeze="all").fit()  # fills the cache
    fast = trainer(class_folder, tmp_path, model="test_resnet", freeze="all")
    slow = trainer(class_folder, tmp_path, model="test_resnet", freeze="all", feature_cache=False)
    assert fast.head_only and slow.head_only
    assert fast.fit() == slow.fit() == "done"
    assert fast.embedder.cache_hits == len(fast.dataset.samples) and slow.embedder.cache_hits == 0
    for (name, a), (_, b) in zip(
        fast.model.fc.state_dict().items(), slow.model.fc.state_dict().items()
    ):
        assert torch.allclose(a, b, atol=1e-4), name
    assert torch.allclose(fast.val_logits, slow.val_logits, atol=1e-3)


def features(folder, tmp_path, **overrides):
    t = trainer(folder, tmp_path, **{"model": "test_resnet", "freeze": "all", **overrides})
    t.prepare()
    return t, t.embedder.features()


def weights_file(tmp_path, name="test_resnet"):
    """Fixed weights from a file, standing in for pretrained ones (random weights have their
    BatchNorm statistics estimated on the training set, which then becomes part of the key)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path / f"{name}.safetensors"
    state = timm.create_model(name).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return str(path)


def test_embedding_cache_is_reused_and_invalidated(class_folder, tmp_path):
    weights = weights_file(tmp_path)
    first, first_features = features(class_folder, tmp_path, weights=weights)
    n = len(first.dataset.samples)
    assert first.embedder.cache_hits == 0
    again, again_features = features(class_folder, tmp_path, weights=weights, lr=1e-2, epochs=9)
    assert (
        again.embedder.cache_hits == n
    )  # another learning rate or more epochs: nothing recomputed
    assert torch.equal(again_features.train, first_features.train)

    changed = next((class_folder / "red").iterdir())
    colour_image((10, 200, 10), seed=99).save(changed)
    edited, _ = features(class_folder, tmp_path, weights=weights)
    assert edited.embedder.cache_hits == n - 1  # only the edited file is computed again

    for other in (
        dict(img_size=64),
        dict(model="test_efficientnet", weights=weights_file(tmp_path, "test_efficientnet")),
        dict(weights="none"),
    ):
        fresh, _ = features(class_folder, tmp_path, **{"weights": weights, **other})
        assert fresh.embedder.cache_hits == 0, other
    # Phase one embeds plain views only, so augmentation (a fine-tuning setting) shares them.
    assert (
        features(class_folder, tmp_path, weights=weights, augment=True)[0].embedder.cache_hits == n
    )
    # Random weights: another seed is another backbone.
    assert features(class_folder, tmp_path, weights="none", seed=1)[0].embedder.cache_hits == 0


def test_weights_file_changes_the_cache_key(class_folder, tmp_path):
    import timm
    from safetensors.torch import save_file

    for i in range(2):
        torch.manual_seed(i)
        model = timm.create_model("test_resnet")
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            tmp_path / f"w{i}.safetensors",
        )
    keys = {
        trainer(
            class_folder,
            tmp_path,
            model="test_resnet",
            freeze="all",
            weights=str(tmp_path / f"w{i}.safetensors"),
        ).embedder.key()
        for i in range(2)
    }
    assert len(keys) == 2


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize("suffix, tolerance", [(".png", 0.002), (".jpg", 0.03)])
def test_decoded_centre_view_matches_timms_evaluation_transform(
    tmp_path, suffix, tolerance, crop_mode
):
    """The view validation and the embedding cache take is the predictor's (timm's transform)
    in every crop mode: equal up to resampling; JPEGs decode in draft mode at a reduced scale,
    so a little more. A wide picture: center crops its sides, squash narrows it, border pads it."""
    path = tmp_path / f"photo{suffix}"
    colour_image((120, 80, 200), size=300).resize((400, 300)).save(path)
    model, _ = build_model("test_resnet", 3, "none")
    cfg = {**data_config(model, 96), "crop_mode": crop_mode}
    geometry = eval_geometry(cfg)
    images = DecodedImages.build([str(path)], geometry)
    feed = BatchFeed(images, np.zeros(1), 96, 1, augment=False, shuffle=False, seed=0)
    view = feed.view(0, augmented=False)
    ours = to_model_input(view[None], cfg["mean"], cfg["std"], torch.device("cpu"))[0]
    transform = eval_transform(cfg)  # the predictor's
    picture = Image.open(path).convert("RGB")
    timms = transform(picture)
    resized = transform.transforms[0](picture)  # the very resize timm makes before cropping
    assert tuple(images[0].shape[1:]) == (resized.height, resized.width)
    assert ours.shape == timms.shape == (3, 96, 96)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    assert ((ours - timms) * std).abs().mean() < tolerance  # in units of the pixel range
    # The predictor's overlay shows the same pixels.
    shown = torch.from_numpy(np.array(geometry.view(picture))).permute(2, 0, 1)
    assert (shown.float() - view.float()).abs().mean() / 255 < tolerance
    if crop_mode == "border":  # padded above and below with the mean colour
        assert view[:, 0, 48].tolist() == [round(255 * m) for m in cfg["mean"]]


def test_the_evaluation_resize_rounds_as_timm_does():
    assert eval_geometry({"input_size": (3, 32, 32), "crop_pct": 0.95}).scale == 33  # 33.7 -> 33
    # crop_pct above 1 shrinks the picture into a padded square, as timm's does
    small = eval_geometry({"input_size": (3, 32, 32), "crop_pct": 1.25})
    padded = small.crop(torch.ones(3, 25, 30, dtype=torch.uint8))
    assert small.scale == 25 and padded.shape == (3, 32, 32) and padded[:, 0, 0].sum() == 0


def test_the_crop_mode_is_part_of_the_cache_key(class_folder, tmp_path):
    t = trainer(class_folder, tmp_path, model="test_resnet", freeze="all")
    keys = set()
    for mode in ("center", "squash", "border"):
        t.data_cfg["crop_mode"] = mode
        keys.add(t.embedder.key())
    assert len(keys) == 3


def test_images_beyond_the_memory_budget_are_decoded_on_demand(class_folder):
    paths = sorted(str(p) for p in class_folder.rglob("*.png"))[:6]
    geometry = eval_geometry({"input_size": (3, 48, 48), "crop_pct": 1.0})
    kept = DecodedImages.build(paths, geometry)
    budget = DecodedImages.build(paths, geometry, budget_bytes=kept.pixels[0].numel() * 2)
    assert (
        sum(t is None for t in budget.pixels) == 4 and budget.bytes_in_memory < kept.bytes_in_memory
    )
    for i in range(len(paths)):
        assert torch.equal(kept[i], budget[i])


def test_frozen_prefix_builds_no_autograd_graph(class_folder, tmp_path):
    t = trainer(class_folder, tmp_path, model="test_resnet", freeze=3, epochs=1)
    frozen_modules = {n.rpartition(".")[0] for s in t.plan.frozen for n in s.params}
    seen = {}

    def hook(name):
        def record(module, args, output):
            seen.setdefault(name, output.requires_grad)

        return record

    modules = dict(t.model.named_modules())
    handles = [modules[n].register_forward_hook(hook(n)) for n in frozen_modules]
    handles.append(t.model.layer4.register_forward_hook(hook("layer4")))
    assert t.fit() == "done"
    assert seen.pop("layer4") is True
    assert seen and not any(seen.values())
    for h in handles:
        h.remove()


def test_prefetch_passes_errors_and_stops_early():
    def boom():
        yield 1
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        list(prefetch(boom()))
    items = prefetch(iter(range(1000)))
    assert next(items) == 0
    items.close()  # leaving early ends the producer instead of leaving it blocked


class Stages:
    """The stages a run reports, in order."""

    def __init__(self):
        self.seen = []

    def on_progress(self, t):
        if not self.seen or self.seen[-1] != t.progress[0]:
            self.seen.append(t.progress[0])


def test_a_second_identical_run_reuses_batchnorm_statistics_and_head(class_folder, tmp_path):
    """Random weights: the statistics and the head of an identical earlier run are taken from
    the cache, without decoding an image, and the model is the one computing them gives."""

    def run(name, **overrides):
        stages = Stages()
        config = make_config(
            data=str(class_folder),
            out=str(tmp_path / name),
            cache_dir=str(tmp_path / "cache"),
            **{**BASE, "model": "test_resnet", "freeze": "all", **overrides},
        )
        t = Trainer(
            config, load_dataset(class_folder), tmp_path / name, [stages], threading.Event()
        )
        assert t.fit() == "done"
        return t, stages.seen

    first, first_stages = run("first")
    again, again_stages = run("again")
    assert "Estimating BatchNorm statistics" in first_stages
    assert not any(s.startswith(("Decoding", "Estimating", "Computing")) for s in again_stages)
    assert not first.head_fit.reused and again.head_fit.reused
    assert "Reused" in again.head_fit.describe()
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    other, _ = run("other-seed", seed=1)  # other random weights: nothing of the first applies
    assert not other.head_fit.reused
    fresh, fresh_stages = run("no-cache", feature_cache=False)
    assert not fresh.head_fit.reused and "Estimating BatchNorm statistics" in fresh_stages
