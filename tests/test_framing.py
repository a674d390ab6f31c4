"""Framing: long, thin images enter the model whole; others get the model's own centre crop."""

from PIL import Image

from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.geometry import eval_geometry
from tlapp.train.recipes import data_config, greyscale, long_share, wants_whole


def write(root, size, mode="RGB", per_class=6):
    for c in ("good", "bad"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new(mode, size, 40 * i).save(root / c / f"{i}.png")
    return root


def test_long_thin_images_enter_whole_and_square_ones_are_cropped(tmp_path):
    strips = load_dataset(write(tmp_path / "strips", (120, 40), mode="L"))
    squares = load_dataset(write(tmp_path / "squares", (64, 64)))
    assert long_share(strips) == 1.0 and long_share(squares) == 0.0
    auto = make_config(data="d")
    assert wants_whole(auto, strips) and not wants_whole(auto, squares)
    assert not wants_whole(make_config(data="d", framing="crop"), strips)
    assert wants_whole(make_config(data="d", framing="whole"), squares)
    assert greyscale(strips) and not greyscale(squares)


def test_whole_framing_keeps_every_pixel_of_a_long_image():
    import timm

    model = timm.create_model("test_resnet", pretrained=False)
    cfg = data_config(model, 48, whole=True)
    assert (cfg["crop_pct"], cfg["crop_mode"]) == (1.0, "squash")
    geometry = eval_geometry(cfg)
    assert geometry.resized_size(300, 100) == (48, 48)  # squeezed, nothing cut away
    cropped = eval_geometry(data_config(model, 48))
    assert cropped.resized_size(300, 100)[0] > 48  # the centre crop cuts the ends off
