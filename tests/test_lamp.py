"""LAMP (Lee et al., ICLR 2021) as an IMP criterion, checked by hand on a tiny network."""

from __future__ import annotations

import math

import pytest
import torch

from deepfake_lth.pruning.criteria import lamp
from deepfake_lth.pruning.masks import magnitude_prune, prune_to_sparsity
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config


def _state():
    # layer a: |w| 10, 20, 30; layer b: |w| 1, 2 (signs must not matter)
    return {"a.weight": torch.tensor([[10.0, -20.0, 30.0]]), "b.weight": torch.tensor([[-1.0, 2.0]])}


def _full(state):
    return {k: torch.ones_like(v, dtype=torch.bool) for k, v in state.items()}


def test_scores_by_hand():
    state = _state()
    mags = [v.abs().flatten() for v in state.values()]
    alive = [torch.ones(m.numel(), dtype=torch.bool) for m in mags]
    a, b = lamp.scores(mags, alive)
    # a: 100 / (100 + 400 + 900), 400 / (400 + 900), 900 / 900
    assert a.tolist() == pytest.approx([100 / 1400, 400 / 1300, 1.0])
    # b: 1 / (1 + 4), 4 / 4
    assert b.tolist() == pytest.approx([1 / 5, 1.0])


def test_ties_share_the_sum_of_all_at_least_as_large():
    mags = [torch.tensor([2.0, 2.0, 1.0])]
    (s,) = lamp.scores(mags, [torch.ones(3, dtype=torch.bool)])
    assert s.tolist() == pytest.approx([4 / 8, 4 / 8, 1 / 9])


def test_pruned_weights_are_left_out_of_the_sums():
    mags = [torch.tensor([10.0, 20.0, 30.0])]
    (s,) = lamp.scores(mags, [torch.tensor([False, True, True])])
    assert s.tolist() == pytest.approx([0.0, 400 / 1300, 1.0])


def test_a_lamp_round_differs_from_global_magnitude_where_the_paper_says():
    state = _state()
    # global magnitude removes the two smallest weights, emptying layer b;
    # LAMP removes a's smallest (score 0.071) and b's smallest (0.2), and keeps both layers
    glob = magnitude_prune(state, _full(state), 0.4, "global")
    assert glob["b.weight"].sum() == 0 and glob["a.weight"].sum() == 3
    mask = magnitude_prune(state, _full(state), 0.4, "lamp")
    assert mask["a.weight"].tolist() == [[False, True, True]]
    assert mask["b.weight"].tolist() == [[False, True]]
    # a second round ranks the survivors only: a 400/1300 < b 1.0 = a's 1.0
    mask2 = magnitude_prune(state, mask, 1 / 3, "lamp")
    assert mask2["a.weight"].tolist() == [[False, False, True]]
    assert mask2["b.weight"].tolist() == [[False, True]]


def test_lamp_one_shot_reaches_the_exact_sparsity():
    torch.manual_seed(0)
    state = {"a.weight": torch.randn(16, 8), "b.weight": torch.randn(4, 16)}
    mask = prune_to_sparsity(state, 0.59, "lamp", mask=_full(state))
    removed = sum(int((~m).sum()) for m in mask.values())
    assert removed == math.floor(0.59 * (128 + 64) + 0.5)


def test_the_config_plans_imp_lamp_rounds():
    cfg = config.read_yaml("config.yaml")
    cfg["prune"]["criteria"] = ["global", "local", "lamp"]
    cfg = config.validate(cfg)
    assert "imp-lamp" in methods.planned_methods(cfg)
    levels = methods.method_levels(cfg, "demo-images", "mesonet", 0, "imp-lamp")
    rounds = cfg["prune"]["rounds"]
    assert rounds >= 4 and [lv.path.name for lv in levels[1:]] == [
        f"round{k}" for k in range(1, rounds + 1)]
    assert methods.label("imp-lamp") == "IMP-LAMP"
