"""fit() with the hyperparameters given as keywords, as the tests write them."""

from __future__ import annotations

import dataclasses

from deepfake_lth.training.fit import fit
from deepfake_lth.training.hparams import TrainingHparams

HPARAMS = {f.name for f in dataclasses.fields(TrainingHparams)}


def fit_with(model, train, val, **kw):
    """``fit(model, train, val, TrainingHparams(those of kw), rest of kw)``."""
    hp = {k: kw.pop(k) for k in list(kw) if k in HPARAMS}
    return fit(model, train, val, TrainingHparams.from_dict(hp), **kw)
