"""Phase one: the new classifier fitted to convergence on frozen features.

    fit = fit_linear_head(train_x, train_y, num_classes)   # train_x: [images, views, dim]
    fit.weight, fit.bias                                   # for an nn.Linear(dim, classes)
    fit.describe()                                         # one line for the page
    fit = fit_prototypes(train_x, train_y, num_classes)    # nearest class mean, no training

With the backbone frozen, training the head is a multinomial logistic regression: a convex
problem that full-batch L-BFGS solves in a few dozen steps, where a few epochs of AdamW from a
random start stop far from the optimum. Features are centred and scaled for the solver and the
result is folded back into plain weights. The L2 strength is chosen on the training images alone
(held out by image, so an image's augmented views never sit on both sides), by validation log
loss; the final head is then refitted on every training row from that choice. A class with
fewer than 3 images leaves nothing to hold out: then the default strength is used, and
describe() says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Names the solver for the cache of fitted heads (train/reuse.py): change it when a change here
# changes what a fit returns, so that heads fitted before are not taken for new ones.
SOLVER = "lbfgs-path-4"
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)  # strength on the mean loss of centred, scaled features
DEFAULT_L2 = L2_GRID[1]  # used when the training images are too few to choose one
MAX_ITER = 300
SELECTION_IMAGES = 2000  # the strength is chosen on at most this many training images


@dataclass
class HeadFit:
    weight: torch.Tensor  # [classes, dim]
    bias: torch.Tensor  # [classes]
    l2: float  # the strength chosen
    iterations: int  # of the final fit
    rows: int  # training rows (images x views)
    images: int
    folds: int  # internal splits the strength was chosen on; 0: none, the default was used
    seconds: float
    losses: list[float]  # training loss at each evaluation of the final fit
    how: str = ""  # set for heads that are not a regression: the sentence describe() gives
    reused: bool = False  # taken from an identical earlier fit (train/reuse.py)

    def describe(self) -> str:
        again = (
            " Reused from an earlier run with the same embeddings, labels and settings."
            if self.reused
            else ""
        )
        return self._sentence() + again

    def _sentence(self) -> str:
        if self.how:
            return self.how
        views = self.rows // max(self.images, 1)
        rows = f"{self.images} images" + (f" × {views} views" if views > 1 else "")
        return (
            f"Head fitted to convergence on frozen features: logistic regression on {rows}, "
            f"full-batch L-BFGS ({self.iterations} iterations), {self._weight_decay()}; "
            f"{self.seconds:.1f} s."
        )

    def _weight_decay(self) -> str:
        """How the L2 strength came about: chosen on folds, on one held-out share, or not
        chosen at all (a class too small to hold any image out)."""
        decay = f"weight decay {self.l2:g}"
        if self.folds > 1:
            return f"{decay} chosen on {self.folds}-fold splits of the training images"
        if self.folds == 1:
            return f"{decay} chosen on held-out training images"
        return (
            f"{decay} (the default: too few images per class to choose it on held-out "
            "training images)"
        )


def fit_linear_head(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    class_weight: torch.Tensor | None = None,
    seed: int = 0,
) -> HeadFit:
    """The L2-regularised softmax regression of `y` on `x` ([images, views, dim] or [n, dim])."""
    start = time.perf_counter()
    x = x.float().reshape(len(x), -1, x.shape[-1]) if x.dim() == 3 else x.float()[:, None]
    y = y.long()
    # Centred and scaled by one number, not per feature: the strength then means the same on any
    # backbone, while weak features stay weak (per-feature scaling blew up noisy ReLU features
    # and lost up to 3 points on the transfer benchmark).
    mean = _rows(x).mean(0)
    scale = (_rows(x) - mean).pow(2).mean().sqrt() + 1e-6
    z = (x - mean) / scale
    folds = _folds(y.numpy(), seed)
    l2 = _choose_l2(z, y, num_classes, class_weight, folds) if folds else DEFAULT_L2
    w, b, losses, iterations = _lbfgs(_rows(z), _row_targets(y, z), num_classes, l2, class_weight)
    weight = w / scale  # back to raw features: W·(x-μ)/s + b = (W/s)·x + (b - (W/s)·μ)
    bias = b - weight @ mean
    return HeadFit(
        weight.detach(),
        bias.detach(),
        l2,
        iterations,
        z.shape[0] * z.shape[1],
        len(y),
        len(folds),
        time.perf_counter() - start,
        losses,
    )


def fit_prototypes(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> HeadFit:
    """The nearest class mean of L2-normalised embeddings (a prototypical classifier): no
    training, and with a few images per class often as good as a trained head.

    As a linear head: the logits are `scale * cos(x, mean_c)` up to a factor shared by every
    class of one image (its norm, replaced by the training images' mean norm), so the predicted
    class is exactly the nearest mean by cosine. `scale` (a temperature) is chosen on the
    training images by log loss, so that the probabilities mean something."""
    start = time.perf_counter()
    x = (x[:, 0] if x.dim() == 3 else x).float()
    y = y.long()
    unit = F.normalize(x, dim=1)
    means = torch.stack([unit[y == c].mean(0) for c in range(num_classes)])
    if (torch.bincount(y, minlength=num_classes) == 0).any():
        raise ValueError("Every class needs at least one training image for its prototype.")
    prototypes = F.normalize(means, dim=1)
    cosines = unit @ prototypes.T
    scales = torch.logspace(0, 2.5, 26)
    losses = [F.cross_entropy(s * cosines, y).item() for s in scales]
    scale = float(scales[int(np.argmin(losses))])
    weight = scale * prototypes / x.norm(dim=1).mean()
    how = (
        f"Prototypes: each class is the mean of its {len(y)} training images' normalised "
        f"embeddings, and an image gets the class whose mean is nearest (cosine); no training, "
        f"probability scale {scale:.0f} chosen on the training images; "
        f"{time.perf_counter() - start:.2f} s."
    )
    return HeadFit(
        weight,
        torch.zeros(num_classes),
        0.0,
        0,
        len(y),
        len(y),
        1,
        time.perf_counter() - start,
        [min(losses)],
        how,
    )


def _rows(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(-1, z.shape[-1])


def _row_targets(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return y.repeat_interleave(z.shape[1])


def _folds(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Image splits to choose the strength on: 3 stratified folds for small sets, one held-out
    fifth of a stratified sample for large ones (the fits are cheap, but ten thousand images need
    no more)."""
    counts = np.bincount(y)
    if len(counts[counts > 0]) < 2 or counts[counts > 0].min() < 3:
        return []  # too few images per class to hold any out: DEFAULT_L2 is used
    if len(y) < SELECTION_IMAGES:
        return stratified_folds(y, 3, seed)
    train, held = stratified_folds(y, 5, seed, sample=SELECTION_IMAGES)[0]
    return [(train, held)]


def stratified_folds(
    y: np.ndarray,
    k: int,
    seed: int,
    sample: int | None = None,
    groups: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, held-out) index pairs that keep every class's share, as scikit-learn's
    StratifiedKFold: each class's images are shuffled and dealt round the folds, each to the fold
    holding the fewest of its class (then the fewest images), so fold sizes differ by one at most.
    With `sample`, only about that many images take part, the same share of every class.

    With `groups` (a number per image; copies of one picture share one, as
    data.duplicates.split_groups gives), whole groups are dealt instead of images, as
    scikit-learn's StratifiedGroupKFold does: every group lies in one fold, the largest groups of
    a class are dealt first, and a group counts as its most common class. Without it, every image
    is its own group and the folds are exactly the ungrouped ones.

    Written out because importing scikit-learn took a second of a first head-only run."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    group_of, label, size, classes_in = _image_groups(y, groups)
    classes = np.unique(y)
    column = {c: i for i, c in enumerate(classes.tolist())}
    of_class = [[0] * len(classes) for _ in range(k)]  # images of each class per fold
    total = [0] * k
    fold_of_group = np.full(len(size), -1)
    for c in classes:
        own = rng.permutation(np.flatnonzero(label == c))
        if sample is not None:
            wanted = max(k, round(int(size[own].sum()) * sample / len(y)))
            own = own[: np.searchsorted(np.cumsum(size[own]), wanted) + 1]
        own = own[np.argsort(-size[own], kind="stable")]  # large groups first: they fit worst
        place = column[c]
        for g in own.tolist():
            f = min(range(k), key=lambda i: (of_class[i][place], total[i], i))
            fold_of_group[g] = f
            for member_class, n in classes_in(g):
                of_class[f][column[member_class]] += n
                total[f] += n
    fold = fold_of_group[group_of]
    return [
        (np.flatnonzero((fold >= 0) & (fold != i)), np.flatnonzero(fold == i)) for i in range(k)
    ]


def _image_groups(y: np.ndarray, groups: np.ndarray | None):
    """(group index per image, class per group, images per group, classes_in(group) -> [(class,
    images)]): a group's class is its most common one (the smallest on a tie)."""
    if groups is None:
        return np.arange(len(y)), y, np.ones(len(y), dtype=int), lambda g: [(y[g].item(), 1)]
    _, group_of, size = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    group_of = group_of.reshape(-1)
    label = np.empty(len(size), dtype=y.dtype)
    label[group_of] = y  # right for single images; groups of copies are set below
    order = np.argsort(group_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    mixed = {}
    for g in np.flatnonzero(size > 1).tolist():
        values, counts = np.unique(y[order[starts[g] : starts[g] + size[g]]], return_counts=True)
        label[g] = values[np.argmax(counts)]
        mixed[g] = list(zip(values.tolist(), counts.tolist()))
    return group_of, label, size, lambda g: mixed.get(g) or [(label[g].item(), 1)]


def _choose_l2(z, y, num_classes, class_weight, folds) -> float:
    """The strength with the lowest held-out log loss. Each fold walks the grid from the
    strongest to the weakest, each fit starting from the last one's solution (a regularisation
    path, as scikit-learn's LogisticRegressionCV does): a few iterations each, not hundreds."""
    scores = dict.fromkeys(L2_GRID, 0.0)
    for train, held in folds:
        rows, targets = _rows(z[train]), _row_targets(y[train], z[train])
        start = None
        for l2 in sorted(L2_GRID, reverse=True):
            w, b, _, _ = _lbfgs(rows, targets, num_classes, l2, class_weight, start=start)
            start = (w, b)
            logits = z[held][:, 0] @ w.T + b  # the plain view of each held-out image
            scores[l2] += F.cross_entropy(logits, y[held], weight=class_weight).item()
    return min(L2_GRID, key=lambda l2: (scores[l2], L2_GRID.index(l2)))


def _lbfgs(x, y, num_classes, l2, class_weight, max_iter: int = MAX_ITER, start=None):
    """Full-batch L-BFGS on the weighted mean cross-entropy plus `l2`/2·|W|², from zeros or
    `start`. The gradient is written out (softmax minus one-hot), not taken by autograd: the
    problem is this small, so autograd's bookkeeping was half of every step."""
    w = torch.zeros(num_classes, x.shape[1]) if start is None else start[0].clone()
    b = torch.zeros(num_classes) if start is None else start[1].clone()
    optimizer = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )
    onehot = F.one_hot(y, num_classes).float()
    row_weight = class_weight[y].float() if class_weight is not None else torch.ones(len(y))
    row_weight = row_weight / row_weight.sum()  # F.cross_entropy's weighted mean
    losses = []

    def closure():
        logits = x @ w.T + b
        log_p = logits.log_softmax(1)
        loss = -(row_weight * (log_p * onehot).sum(1)).sum() + l2 / 2 * (w * w).sum()
        residual = (log_p.exp() - onehot) * row_weight[:, None]
        w.grad, b.grad = residual.T @ x + l2 * w, residual.sum(0)
        losses.append(loss.item())
        return loss

    with torch.no_grad():
        optimizer.step(closure)
    return w, b, losses, optimizer.state[w].get("n_iter", 0)


def set_linear_head(classifier: torch.nn.Module, fit: HeadFit) -> None:
    """Copy a fitted head into the model's classifier (a Linear, or a 1x1 convolution)."""
    with torch.no_grad():
        weight = fit.weight.to(classifier.weight.device, classifier.weight.dtype)
        classifier.weight.copy_(weight.reshape(classifier.weight.shape))
        classifier.bias.copy_(fit.bias.to(classifier.bias.device, classifier.bias.dtype))


def fittable(classifier) -> bool:
    """Whether a classifier is one linear map with a bias, so that phase one can set it."""
    if isinstance(classifier, torch.nn.Linear):
        return classifier.bias is not None
    return (
        isinstance(classifier, torch.nn.Conv2d)
        and classifier.kernel_size == (1, 1)
        and classifier.bias is not None
    )
