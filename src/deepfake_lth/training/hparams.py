"""How one network is trained: the config's ``train`` section as a typed record.

:class:`TrainingHparams` is what :func:`deepfake_lth.training.fit.fit` takes. Its defaults are the
config schema's (``train``), read from it; a job's spec may cap ``max_epochs`` (an IMP round's
retraining, a one-shot budget) and set ``min_epochs`` (an exact budget: early stopping picks
the best epoch but does not end the run sooner).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepfake_lth.core.errors import UserError

MONITORS = ("val_loss", "val_acc")


@dataclass(frozen=True)
class TrainingHparams:
    """Adam, a batch size, an epoch budget and early stopping (docs: the schema's ``train``)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 100
    min_epochs: int = 0  # early stopping may not end the run before this epoch
    patience: int = 10
    monitor: str = "val_loss"
    augment: bool = True  # random horizontal flips
    max_train_samples: int | None = None
    amp: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise UserError(f"train.monitor: {self.monitor!r} is not one of {', '.join(MONITORS)}")
        if not self.lr >= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise UserError(
                f"train: lr must be ≥ 0 and batch_size, max_epochs, patience ≥ 1 (got lr "
                f"{self.lr}, batch_size {self.batch_size}, max_epochs {self.max_epochs}, "
                f"patience {self.patience})"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None) -> TrainingHparams:
        """The record of a spec's ``train`` object over the schema's defaults; an unknown key is
        an error naming the allowed ones."""
        from deepfake_lth.core.schema import section_defaults

        names = [f.name for f in dataclasses.fields(cls)]
        values = dict(values or {})
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UserError(f"spec.train: unknown key(s) {', '.join(unknown)}; allowed keys: "
                            f"{', '.join(names)}")
        defaults = {k: v for k, v in section_defaults("train").items() if k in names}
        return cls(**{**defaults, **values})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainingHparams:
        return dataclasses.replace(self, **changes)

    @property
    def eval_batch_size(self) -> int:
        """Evaluation needs no gradients: at least 256 faces a batch."""
        return max(int(self.batch_size), 256)
