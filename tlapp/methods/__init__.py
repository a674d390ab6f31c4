"""Transfer-learning methods beside fine-tuning, each on the frozen backbone's cached embeddings
and each usable from the CLI.

| module | what it answers |
|---|---|
| `embeddings` | the frozen backbone's embeddings of every image, through the run's own cache |
| `kfold` | how sure is this accuracy? stratified k-fold of the head fit: mean ± spread |

The prototype classifier (nearest class mean, no training) is a head phase one can fit:
`TrainConfig(head="prototypes")`, in `tlapp.train.head`.
"""

from .embeddings import frozen_features
from .kfold import CrossValidation, cross_validate, cross_validate_features

__all__ = ["CrossValidation", "cross_validate", "cross_validate_features", "frozen_features"]
