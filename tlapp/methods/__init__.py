"""Transfer-learning methods beside fine-tuning, each on the frozen backbone's cached embeddings
and each usable from the CLI.

| module | what it answers |
|---|---|
| `embeddings` | the frozen backbone's embeddings of every image, through the run's own cache |
| `kfold` | how sure is this accuracy? stratified k-fold of the head fit: mean ± spread |
| `distill` | a trained run taught to a smaller backbone, quantised to int8, all three compared |
| `teacher`, `measure` | distill's teacher (its run, data and settings) and its comparison table |
| `pseudo` | do unlabelled images help? self-training on confident pseudo-labels |
| `adabn` | a trained model on images of another kind: BatchNorm statistics re-estimated (AdaBN) |

The prototype classifier (nearest class mean, no training) is a head phase one can fit:
`TrainConfig(head="prototypes")`, in `tlapp.train.head`.
"""

from .adabn import AdaBNResult, adapt_batchnorm
from .distill import DistillReport, distill
from .embeddings import frozen_features, frozen_features_with
from .kfold import CrossValidation, cross_validate, cross_validate_features
from .pseudo import SelfTraining, self_train

__all__ = [
    "AdaBNResult",
    "CrossValidation",
    "DistillReport",
    "SelfTraining",
    "adapt_batchnorm",
    "cross_validate",
    "cross_validate_features",
    "distill",
    "frozen_features",
    "frozen_features_with",
    "self_train",
]
