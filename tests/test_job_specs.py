"""A job's spec holds exactly the config keys its stage reads: changing a key replans the
rules that compute from it and no other (the params trigger), checked key by key on a config
that runs every method family."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from deepfake_lth.analysis import generalisation as zero_shot
from deepfake_lth.analysis import gradcam, latency, separability
from deepfake_lth.deploy import quantize
from deepfake_lth.stages import methods
from deepfake_lth.workflow import config as study_config
from deepfake_lth.workflow.jobs import as_json, training_specs

ROOT = Path(__file__).resolve().parents[1]
TRAINED = {"imp_round", "imp_round_rate", "oneshot", "control", "structured_round", "kd_round",
           "prune_init", "lowrank"}
TRANSFER = {"transfer_ticket", "transfer_finetuned"}
ANALYSIS = {"gradcam": gradcam, "separability": separability, "latency": latency,
            "generalise": zero_shot, "quantize": quantize}


def every_family() -> dict:
    """The smoke config with every family, and every analysis, switched on."""
    cfg = study_config.read_yaml(ROOT / "config" / "smoke.yaml")
    cfg.update(controls=["reinit", "random-chain"], step_sizes={"rates": [0.1]},
               prune_init={"methods": ["snip"], "sparsities": [0.36]},
               lowrank={"models": ["mesonet"], "sparsities": [0.36]},
               separability={"methods": ["imp-global"]})
    cfg["prune"]["retrain_epochs"] = 1
    return cfg


def specs(cfg: dict) -> dict[str, dict[str, str]]:
    cfg = study_config.validate(copy.deepcopy(cfg))
    out = training_specs(cfg)
    for rule, module in ANALYSIS.items():
        out[rule] = {m: as_json(module.job_spec(cfg, m)) for m in cfg["models"]}
    return out


def replanned(change) -> set[str]:
    """Rules with a job whose spec or command line changes, or jobs that appear or go."""
    base = every_family()
    changed = copy.deepcopy(base)
    change(changed)
    before, after = specs(base), specs(changed)
    return {rule for rule in before if before[rule] != after.get(rule)}


def _set(path: str, value):
    def change(cfg: dict) -> None:
        *keys, last = path.split(".")
        node = cfg
        for k in keys:
            node = node.setdefault(k, {})
        node[last] = value
    return change


def test_the_base_config_plans_every_family():
    planned = specs(every_family())
    assert all(planned[f.rule] for f in methods.FAMILIES), [
        f.rule for f in methods.FAMILIES if not planned[f.rule]]


@pytest.mark.parametrize("key, value, rules", [
    # every network's training, none of the scoring
    ("train.lr", 0.01, TRAINED | TRANSFER | {"train_dense"}),
    ("train.batch_size", 8, TRAINED | TRANSFER | {"train_dense"}),
    # scoring in mixed precision too
    ("train.amp", False, TRAINED | TRANSFER | {"train_dense", "generalise"}),
    # the rate of a round, and where one-shot and SNIP levels sit (the step sizes' rounds and
    # the transferred tickets' levels follow the final sparsity); not the dense network
    ("prune.rate", 0.3, {"imp_round", "oneshot", "kd_round", "structured_round", "prune_init",
                         "imp_round_rate", "transfer_ticket", "lowrank"}),
    # the epoch budget of everything trained from trained weights
    ("prune.retrain_epochs", 2, TRAINED | TRANSFER),
    ("prune.budget", "early-stopping", TRAINED | TRANSFER),
    # rewinding: the chains and the one-shot and shuffled/chained controls, and the budgets
    # matched to a round's (retrain_epochs holds only without rewinding); the dense network
    # only when it must keep an epoch's weights
    ("prune.rewind", "init", TRAINED),
    ("prune.rewind", "epoch:1", TRAINED | {"train_dense"}),
    ("kd.temperature", 2.0, {"kd_round"}),
    ("oneshot.budget", "matched", {"oneshot"}),
    ("prune_init.batches", 2, {"prune_init"}),
    ("lowrank.budget", "matched", {"lowrank"}),
    ("lowrank.multiple", 4, {"lowrank"}),
    ("gradcam.samples_per_class", 3, {"gradcam"}),
    ("latency.repeats", 5, {"latency"}),
    ("compression.repeats", 5, {"quantize"}),
    ("separability.folds", 3, {"separability"}),
    ("models.mesonet.input_size", 40, TRAINED | TRANSFER | {"train_dense", *ANALYSIS}),
])
def test_a_config_key_replans_the_rules_that_read_it(key, value, rules):
    assert replanned(_set(key, value)) == rules


def test_how_jobs_run_replans_nothing():
    assert replanned(_set("threads", 4)) == set()
    assert replanned(_set("device", "cpu")) == set()


def test_a_model_can_have_seeds_of_its_own():
    """``models.{model}.seeds`` overrides ``seeds`` for that model alone: three runs of a small
    model beside one of a large one, every stage of each run included."""
    cfg = every_family()
    cfg["models"] = {"mesonet": {"input_size": 32, "seeds": [0, 1, 2]}, "cnn5": {"input_size": 32}}
    planned = training_specs(study_config.validate(cfg))
    dense = sorted(planned["train_dense"])
    assert [d.split("/")[2:4] for d in dense if "smoke-images" in d] == [
        ["cnn5", "seed0"], ["mesonet", "seed0"], ["mesonet", "seed1"], ["mesonet", "seed2"]]
    rounds = {k.split("/")[3] for k in planned["imp_round"] if "/mesonet/" in k}
    assert rounds == {"seed0", "seed1", "seed2"}
    assert {k.split("/")[3] for k in planned["imp_round"] if "/cnn5/" in k} == {"seed0"}
    transfers = {k.split("/")[2] for k in planned["transfer_ticket"] if "/mesonet/" in k}
    assert transfers == {"0", "1", "2"}
