"""Methods beside fine-tuning: prototypes (no training), k-fold estimates, self-training on
unlabelled images, AdaBN for a domain shift and distillation into a smaller backbone, each with
its real effect on a constructed case."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import COLORS, write_classes
from PIL import Image

from tlapp import runs
from tlapp.config import make_config
from tlapp.data import load_dataset
from tlapp.methods import (
    adapt_batchnorm,
    cross_validate,
    cross_validate_features,
    distill,
    self_train,
)
from tlapp.methods.kfold import copy_groups
from tlapp.predict import Predictor
from tlapp.train import Job
from tlapp.train.head import fit_prototypes, stratified_folds

FAST = dict(model="test_resnet", weights="none", img_size=48, batch_size=8)


def clusters(seed: int, n: int, classes: int = 4, dim: int = 32, spread: float = 1.0):
    """Embeddings around one direction per class (what a pretrained backbone gives), positive
    like ReLU features, with noise `spread`."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(classes, dim, generator=torch.Generator().manual_seed(7)) * 3
    y = torch.arange(n) % classes
    return (centres[y] + spread * torch.rand(n, dim, generator=g)).clamp(min=0), y


def test_prototypes_are_the_nearest_normalised_class_mean():
    x, y = clusters(0, 40)
    xv, yv = clusters(1, 400)
    fit = fit_prototypes(x, y, 4)
    means = torch.stack([F.normalize(x[y == c], dim=1).mean(0) for c in range(4)])
    nearest = (F.normalize(xv, dim=1) @ F.normalize(means, dim=1).T).argmax(1)
    predicted = F.linear(xv, fit.weight, fit.bias).argmax(1)
    assert torch.equal(predicted, nearest)  # the linear head is exactly the cosine rule
    assert (predicted == yv).float().mean() > 0.9  # chance is 0.25
    assert "Prototypes" in fit.describe() and fit.images == 40


def test_a_prototype_run_is_a_usable_model(class_folder, tmp_path):
    config = make_config(
        data=str(class_folder), freeze="all", head="prototypes", out=str(tmp_path / "run"), **FAST
    )
    state = Job(config).start().wait(120)
    assert state.status == "done", state.message
    assert any("Prototypes" in note for note in state.notes)
    predictor = Predictor(tmp_path / "run")
    images = sorted((class_folder / "red").iterdir())[:3]
    assert [row[0][0] for row in map(predictor.top_k, images)] == ["red"] * 3
    assert state.best_accuracy > 1 / len(COLORS)


def test_kfold_spreads_shrink_with_more_data():
    spreads = {}
    for n in (40, 800):
        x, y = clusters(2, n, spread=6.0)  # overlapping: accuracy varies from fold to fold
        cv = cross_validate_features(x, y, list("abcd"), folds=5)
        assert len(cv.accuracy) == 5 and cv.images == n
        spreads[n] = np.std(cv.accuracy)
    assert spreads[800] < spreads[40] / 2


def test_kfold_on_a_dataset_reports_mean_spread_and_recall_per_class(class_folder, tmp_path):
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    dataset = load_dataset(class_folder)
    cv = cross_validate(config, dataset, folds=3)
    labelled = len(dataset.split("train")) + len(dataset.split("val"))
    assert len(dataset.split("test")) > 0 and labelled < 12 * len(COLORS)  # a test share is kept
    assert cv.folds == 3 and cv.images == labelled  # train and validation pooled, never test
    assert list(cv.per_class["class"]) == sorted(COLORS)
    assert 0 <= min(cv.accuracy) <= max(cv.accuracy) <= 1
    assert f"over 3 folds of {labelled} labelled images" in cv.describe()
    with pytest.raises(ValueError, match="at least 20 images in every class"):
        cross_validate(config, load_dataset(class_folder), folds=20)


def test_grouped_folds_keep_each_group_whole_and_class_shares_like_scikit_learn():
    from sklearn.model_selection import StratifiedGroupKFold

    for seed in range(5):
        rng = np.random.default_rng(seed)
        sizes = rng.choice([1, 1, 1, 1, 2, 2, 3, 5], size=120)  # groups of copies among singles
        groups = np.repeat(np.arange(120), sizes)
        y = np.repeat(rng.choice(4, size=120, p=[0.4, 0.3, 0.2, 0.1]), sizes)
        y[np.flatnonzero(sizes[groups] == 5)[::5]] = 3  # some groups hold two classes
        folds = stratified_folds(y, 5, seed, groups=groups)
        held = np.concatenate([h for _, h in folds])
        assert sorted(held) == list(range(len(y)))  # every image held out exactly once
        for train, held in folds:
            assert len(train) + len(held) == len(y)
            assert set(groups[train]).isdisjoint(groups[held])  # no group on both sides
        theirs = StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(y, y, groups)
        assert share_error(y, folds) <= share_error(y, list(theirs)) + 1e-9


def share_error(y: np.ndarray, folds) -> float:
    """The largest gap between a class's images in a held-out fold and its fair share."""
    fair = np.bincount(y) / len(folds)
    return max(np.abs(np.bincount(y[held], minlength=len(fair)) - fair).max() for _, held in folds)


def test_kfold_keeps_copies_of_a_picture_in_one_fold_and_never_uses_test_images(
    tmp_path, monkeypatch
):
    data = tmp_path / "data"
    write_classes(data / "train", 8, seed=1)
    write_classes(data / "val", 3, seed=2)
    write_classes(data / "test", 3, seed=3)
    copies = []  # (original, copy): exact and resized copies, within train and across train/val
    for c in COLORS:
        originals = sorted((data / "train" / c).iterdir())
        for i, (where, resize) in enumerate([("train", False), ("val", False), ("val", True)]):
            copy = data / where / c / f"copy_{i}.png"
            image = Image.open(originals[i])
            (image.resize((40, 40)) if resize else image).save(copy)
            copies.append((str(originals[i]), str(copy)))
    dealt = []

    def recorded(*args, **kwargs):
        dealt.append(stratified_folds(*args, **kwargs))
        return dealt[-1]

    monkeypatch.setattr("tlapp.methods.kfold.stratified_folds", recorded)
    dataset = load_dataset(data)
    config = make_config(data=str(data), cache_dir=str(tmp_path / "cache"), **FAST)
    cv = cross_validate(config, dataset, folds=3)

    paths = dataset.split("train")["path"].tolist() + dataset.split("val")["path"].tolist()
    assert cv.images == len(paths) == (8 + 3 + 3) * len(COLORS)  # train and val, no test image
    groups = copy_groups(dataset)
    assert all(groups[paths.index(a)] == groups[paths.index(b)] for a, b in copies)
    (folds,) = dealt
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(paths)))  # complete, and each image in one fold only
    for train, held in folds:
        assert set(train).isdisjoint(held) and len(train) + len(held) == len(paths)
        assert set(groups[train]).isdisjoint(groups[held])  # no copy on both sides


# Colours 8 levels apart: with two labelled images per class the head is unsure of some, and
# many confident pseudo-labels of the same classes settle the boundary.
NEAR = {"a": (128, 120, 120), "b": (120, 128, 120), "c": (120, 120, 128)}


def test_self_training_takes_confident_pseudo_labels_and_validation_accuracy_rises(tmp_path):
    data = tmp_path / "data"
    write_classes(data / "train", 2, NEAR, seed=1)
    write_classes(data / "val", 30, NEAR, seed=2)
    unlabelled = write_classes(tmp_path / "unlabelled", 60, NEAR, seed=3)  # truth: the folder
    copy = sorted((data / "val" / "a").iterdir())[0]
    shutil.copy(copy, unlabelled / "copy_of_a_validation_image.png")
    config = make_config(data=str(data), cache_dir=str(tmp_path / "cache"), **FAST)
    dataset = load_dataset(data)
    result = self_train(config, dataset, [unlabelled], threshold=0.9)

    table = result.pseudo_labels
    assert len(table) == 3 * 60  # the copy of a validation image is left out, and said so
    assert list(result.skipped["reason"]) == ["the same file as a labelled image"]
    assert not set(table["path"]) & set(dataset.samples["path"])
    taken = table[table["taken"]]
    assert len(taken) >= 60 and (taken["confidence"] >= 0.9).all()
    truth = taken["path"].map(lambda p: Path(p).parent.name)
    assert (truth == taken["label"]).mean() >= 0.9
    assert list(result.per_class["class"]) == list(NEAR)
    assert list(result.per_class["labelled"]) == [2, 2, 2]
    assert result.per_class["pseudo_labelled"].sum() == result.taken == len(taken)
    assert result.val_images == 90  # the validation split, and nothing else
    assert result.val_accuracy_after > result.val_accuracy_before  # 92.2% -> 100% when written
    assert "with 0 of" not in result.describe() and "0.9" in result.describe()


def test_self_training_with_a_threshold_nothing_reaches_changes_nothing(class_folder, tmp_path):
    unlabelled = write_classes(tmp_path / "unlabelled", 2, seed=9)
    config = make_config(data=str(class_folder), cache_dir=str(tmp_path / "cache"), **FAST)
    result = self_train(config, load_dataset(class_folder), [unlabelled], threshold=1.0)
    assert result.taken == 0 and result.rounds == 0
    assert result.val_accuracy_after == result.val_accuracy_before
    with pytest.raises(ValueError, match="threshold is a probability"):
        self_train(config, load_dataset(class_folder), [unlabelled], threshold=1.5)


def shifted(source: Path, dest: Path) -> Path:
    """A copy of the images darkened to 40% with a blue cast: another camera at dusk."""
    for path in sorted(source.rglob("*.png")):
        pixels = np.asarray(Image.open(path)).astype(float) * 0.4 + np.array([0, 0, 60])
        (dest / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(dest / path.relative_to(source))
    return dest


def test_adabn_recovers_accuracy_lost_to_a_shift_and_saves_a_usable_run(class_folder, tmp_path):
    run = tmp_path / "run"
    config = make_config(
        data=str(class_folder),
        out=str(run),
        recipe="one-phase",
        epochs=4,
        augment=False,  # no colour jitter: the model knows only the source's brightness
        lr=3e-3,
        **FAST,
    )
    assert Job(config).start().wait(240).status == "done"
    target = shifted(write_classes(tmp_path / "target", 30, seed=5), tmp_path / "target_dusk")
    labelled = shifted(write_classes(tmp_path / "sample", 15, seed=6), tmp_path / "sample_dusk")
    original = (run / "model.safetensors").read_bytes()

    result = adapt_batchnorm(run, [target], labelled_target=labelled)
    assert result.layers > 0 and result.target_images == 90 and result.labelled_images == 45
    # 33% (chance) before, 100% after when written: the shift is an affine change of the
    # pixels, which BatchNorm statistics of the shifted images undo.
    assert result.accuracy_before <= 0.6 and result.accuracy_after >= 0.9
    assert result.run_dir == tmp_path / "run-adabn"
    assert (run / "model.safetensors").read_bytes() == original  # the original is kept
    assert not (result.run_dir / "checkpoint").exists()
    info = runs.read_config(result.run_dir)
    assert info["adabn"]["target_images"] == 90 and info["adabn"]["accuracy_after"] >= 0.9
    assert "AdaBN" in info["notes"][-1]
    predictor = Predictor(result.run_dir)  # predicts like any run
    dusk_red = sorted((labelled / "red").iterdir())[:3]
    assert [predictor.top_k(p)[0][0] for p in dusk_red] == ["red"] * 3
    assert "before" in result.describe() and "after" in result.describe()
    again = adapt_batchnorm(run, [target])  # a second adaptation gets a folder of its own
    assert again.run_dir == tmp_path / "run-adabn-2" and again.accuracy_before is None


def test_adabn_on_a_model_without_batchnorm_says_why(class_folder, tmp_path):
    config = make_config(
        data=str(class_folder),
        out=str(tmp_path / "run"),
        freeze="all",
        **FAST | {"model": "test_vit"},
    )
    assert Job(config).start().wait(240).status == "done"
    with pytest.raises(runs.RunError, match="no BatchNorm layers"):
        adapt_batchnorm(tmp_path / "run", [class_folder])
    assert not (tmp_path / "run-adabn").exists()


def test_distilling_a_run_into_a_smaller_backbone(class_folder, tmp_path):
    """A resnet10t teacher (4.9M parameters) taught to test_resnet (0.37M): a smaller file, an
    accuracy near the teacher's on these separable colours, a normal run folder, and the table."""
    import timm

    teacher = tmp_path / "teacher"
    config = make_config(
        data=str(class_folder),
        model="resnet10t",
        weights="none",
        img_size=48,
        batch_size=8,
        recipe="one-phase",
        epochs=4,
        out=str(teacher),
    )
    state = Job(config).start().wait(120)
    assert state.status == "done", state.message
    unlabelled = write_classes(tmp_path / "unlabelled", per_class=2, seed=9)
    shutil.copy(next((class_folder / "blue").iterdir()), unlabelled / "copy.png")  # left out
    report = distill(
        teacher,
        "test_resnet",
        out=tmp_path / "student",
        epochs=6,
        unlabelled_paths=[unlabelled],
        weights="none",
        timed_runs=5,
        batch_size=4,  # over the teacher's recorded batch size (it used to clash with it)
    )
    print(report.describe())
    student = report.run
    assert report.status == "done"
    assert runs.read_config(student)["config"]["batch_size"] == 4
    table = report.table.set_index("model")
    assert list(table.index) == ["teacher", "student", "student int8"]
    assert (student / "model.safetensors").stat().st_size < (
        teacher / "model.safetensors"
    ).stat().st_size
    assert table.loc["student", "size (MB)"] < table.loc["teacher", "size (MB)"]
    margin = 0.1  # the student within 10 points of the teacher on this separable case
    assert table.loc["student", "val accuracy"] >= table.loc["teacher", "val accuracy"] - margin
    int8 = table.loc["student int8"]
    if int8["note"].startswith("refused"):  # a refusal says why and gives no numbers
        assert pd.isna(int8["size (MB)"]) and "%" in int8["note"]
        rows = table.loc[["teacher", "student"]]
    else:
        assert int8["size (MB)"] < table.loc["student", "size (MB)"]  # int8 weights: smaller
        rows = table
    assert (rows["size (MB)"] > 0).all() and (rows["CPU latency (ms)"] > 0).all()
    # a normal run folder: the predictor, timm's local-dir loader, the record of how it was made
    images = sorted((class_folder / "red").iterdir())[:3]
    assert [Predictor(student).top_k(im)[0][0] for im in images] == ["red"] * 3
    model = timm.create_model("local-dir:" + str(student), pretrained=True)
    assert model.num_classes == len(COLORS) and model.pretrained_cfg["label_names"] == sorted(
        COLORS
    )
    info = runs.read_config(student)
    assert info["arch"] == "test_resnet"
    assert info["distillation"]["temperature"] == 4.0 and info["distillation"]["alpha"] == 0.5
    assert info["distillation"]["teacher"] == str(teacher.resolve())
    assert info["distillation"]["unlabelled_images"] == 2 * len(COLORS)
    assert info["distillation"]["unlabelled_left_out"] == 1
    assert runs.method_of(info) == "distilled from resnet10t (T 4, alpha 0.5)"
    assert len(pd.read_csv(student / "metrics.csv")) == 6
    assert not (student / "checkpoint").exists()
    assert "teacher" in report.describe()


def test_the_distillation_loss_is_hintons():
    from tlapp.methods.distill import distillation_loss

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, -1, -1])  # the last two are unlabelled
    T = 4.0
    kl = (
        (
            F.softmax(teacher / T, 1)
            * (F.log_softmax(teacher / T, 1) - F.log_softmax(student / T, 1))
        ).sum(1)
        * T
        * T
    )
    ce = F.cross_entropy(student[:4], labels[:4], reduction="none")
    expected = torch.cat([0.3 * ce + 0.7 * kl[:4], kl[4:]]).mean()
    assert torch.allclose(distillation_loss(student, teacher, labels, T, 0.3), expected)
    assert distillation_loss(teacher, teacher, torch.full((6,), -1), T, 0.5).abs() < 1e-6
