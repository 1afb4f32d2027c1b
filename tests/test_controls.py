"""Controls as chains, matched training budgets and the dense-fine-tuned transfer baseline.

The plan of config/controls.yaml (registry and dry run), the budget arithmetic, and the
stages on tiny data (mesonet, 32 px): a random-chain round is nested in its previous round
and keeps the ticket's per-layer counts; metrics.json records budget and cumulative epochs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_stages import SPEC, check_ticket, write_faces

from deepfake_lth import cli
from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import checkpoints, plan
from deepfake_lth.stages import methods
from deepfake_lth.stages.control import control
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.imp import imp_round
from deepfake_lth.workflow import config as study_config

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def controls_cfg():
    return study_config.validate(study_config.read_yaml(ROOT / "config" / "controls.yaml"))


def test_controls_yaml_plans_the_three_control_chains(controls_cfg):
    cfg = controls_cfg
    assert cfg["controls"] == ["reinit", "shuffle", "random-chain"]
    assert methods.MATCHED_CONTROL == "random-chain"
    planned = methods.planned_methods(cfg)
    for name in ("reinit", "shuffle", "random-chain"):
        assert f"control-{name}" in planned
    rounds = cfg["prune"]["rounds"]
    assert rounds == 8
    ticket = methods.control_ticket_method(cfg)
    assert ticket == "imp-global"
    base = plan.run_dir(cfg["results"], "demo-images", "mesonet", 1)
    levels = {lv.path for lv in methods.planned_levels(cfg, "demo-images", "mesonet", 1)}
    for name in ("reinit", "shuffle", "random-chain"):
        for k in range(1, rounds + 1):
            assert base / f"control-{name}" / f"round{k}" in levels, (name, k)
        assert base / f"control-{name}" / f"round{rounds + 1}" not in levels
    for k in range(1, rounds + 1):
        src = {n: methods.control_sources(cfg, "demo-images", "mesonet", 1, n, k)
               for n in ("reinit", "shuffle", "random-chain")}
        for s in src.values():  # every control is of the IMP ticket at the same round
            assert s["ticket"] == base / ticket / f"round{k}"
        prev = base / "dense" if k == 1 else base / "control-random-chain" / f"round{k - 1}"
        assert src["random-chain"]["prev"] == prev  # round k prunes the chain's round k−1
        assert src["shuffle"]["prev"] == (base / "dense" if k == 1
                                          else base / ticket / f"round{k - 1}")
        assert "prev" not in src["reinit"]
    with pytest.raises(ValueError, match="round 9"):
        methods.control_sources(cfg, "demo-images", "mesonet", 1, "random-chain", 9)
    with pytest.raises(UserError, match="not one of"):
        methods.control_sources(cfg, "demo-images", "mesonet", 1, "nonsense", 1)


def test_controls_yaml_dag_chains_the_random_rounds(tmp_path):
    """The dry run of config/controls.yaml: control-random-chain round k reads round k−1 of
    itself (dense for k = 1), shuffle and reinit run at every round, and the one-shot and
    SNIP/GraSP jobs get the matched budgets."""
    for name in ("Snakefile", "config.yaml", "environment.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("workflow", "src", "config"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "none", "--cores", "1", "-n",
         "-p", "--configfile", "config/controls.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", proc.stdout):
        m = re.match(r"rule (\w+):", block)
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        if m and w:
            wc = dict(kv.split("=", 1) for kv in w.group(1).split(", "))
            name = re.sub(r"^(control|oneshot|imp|kd|structured)-", "", wc.get("method", ""))
            jobs[(m.group(1), name, wc.get("seed"), re.sub(r"\D", "", wc.get("level", "")))] = block
    base = "results/controls/demo-images/mesonet/seed1"  # the preset's own folder
    for k in range(1, 9):
        for name in ("reinit", "shuffle", "random-chain"):
            assert ("control", name, "1", str(k)) in jobs, (name, k)
        block = jobs[("control", "random-chain", "1", str(k))]
        prev = f"{base}/dense" if k == 1 else f"{base}/control-random-chain/round{k - 1}"
        assert f"{prev}/checkpoint.pt" in block and f"--prev {prev} " in block
        assert f"{base}/imp-global/round{k}/mask.pt" in block
    assert ("control", "random-chain", "1", "9") not in jobs
    assert '"max_epochs":32' in jobs[("oneshot", "global", "1", "83")]  # 8 rounds × 4
    assert '"max_epochs":22' in jobs[("prune_init", "snip", "1", "59")]  # 6 + 4 rounds × 4


def test_budgets_matched_and_per_round(controls_cfg):
    cfg = controls_cfg  # rate 0.2, retrain_epochs 4, max_epochs 6, rewind none
    assert cfg["oneshot"]["budget"] == "matched" and cfg["prune_init"]["budget"] == "matched"
    assert plan.round_epochs(cfg) == 4
    # 0.5904 is IMP round 4, 0.8322 round 8
    assert plan.oneshot_epochs(cfg, 0.5904) == 16 and plan.oneshot_epochs(cfg, 0.8322) == 32
    assert plan.pai_epochs(cfg, 0.5904) == 6 + 16
    per_round = {**cfg, "oneshot": {**cfg["oneshot"], "budget": "round"},
                 "prune_init": {**cfg["prune_init"], "budget": "round"}}
    assert plan.oneshot_epochs(per_round, 0.8322) == 4 and plan.pai_epochs(per_round, 0.8) == 6
    no_cap = {**cfg, "prune": {**cfg["prune"], "retrain_epochs": None}}
    assert plan.oneshot_epochs(no_cap, 0.36) == 2 * 6  # k × the dense max_epochs
    rewound = {**cfg, "prune": {**cfg["prune"], "rewind": "init"}}
    assert plan.round_epochs(rewound) == 6  # a round from θ0 keeps train.max_epochs


def test_transfer_plans_the_dense_finetuned_baseline(controls_cfg):
    cfg = {**controls_cfg, "transfer": {**controls_cfg["transfer"], "pairs": [
        {"from": "demo-images", "to": "demo-images"}]}}
    names = methods.transfer_methods(cfg)
    assert names[:2] == ["dense", "dense-finetuned"]
    assert any(n.startswith("imp-global-sparsity") for n in names)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Dense, IMP-Global rounds 1–2 and the random chain's rounds 1–2 on tiny data."""
    root = tmp_path_factory.mktemp("results")
    faces = write_faces(root, "dsa", seed=1)
    run = root / "dsa" / "mesonet" / "seed0"
    train_dense(faces, run / "dense", "mesonet", 0, SPEC)
    prev_imp, prev_chain = run / "dense", run / "dense"
    for k in (1, 2):
        imp = run / "imp-global" / f"round{k}"
        imp_round(faces, prev_imp, run / "dense", imp, "mesonet", 0, k, "global", SPEC)
        out = run / "control-random-chain" / f"round{k}"
        control(faces, imp, run / "dense", out, "mesonet", 0, "random-chain", SPEC,
                       prev_dir=prev_chain)
        prev_imp, prev_chain = imp, out
    return root, faces, run


def test_random_chain_is_nested_and_has_the_tickets_counts(chain):
    _, _, run = chain
    prev_mask = None
    for k in (1, 2):
        folder = run / "control-random-chain" / f"round{k}"
        m = check_ticket(folder, plan.imp_sparsity(0.2, k))
        assert m["method"] == "control-random-chain" and m["round"] == k
        assert m["control_prev"].endswith("dense" if k == 1 else "control-random-chain/round1")
        mask = checkpoints.load_mask(folder / "mask.pt")
        ticket = checkpoints.load_mask(run / "imp-global" / f"round{k}" / "mask.pt")
        for n in mask:
            assert int(mask[n].sum()) == int(ticket[n].sum()), (k, n)  # the ticket's counts
        assert not all(torch.equal(mask[n], ticket[n]) for n in mask)  # not magnitude's choice
        if prev_mask is not None:  # nested in its own previous round, not in IMP's
            assert all(not (mask[n] & ~prev_mask[n]).any() for n in mask)
        prev_mask = mask
    imp1 = checkpoints.load_mask(run / "imp-global" / "round1" / "mask.pt")
    assert any((prev_mask[n] & ~imp1[n]).any() for n in prev_mask)  # its own chain, not IMP's


def test_cumulative_and_budget_epochs(chain):
    _, _, run = chain

    def metrics(*parts):
        return json.loads((run.joinpath(*parts) / "metrics.json").read_text())

    dense = metrics("dense")
    assert dense["budget_epochs"] == 2 and dense["cumulative_epochs"] == dense["epochs"]
    total = dense["epochs"]
    for k in (1, 2):  # rewind none: the weights carry every earlier round's epochs
        imp = metrics("imp-global", f"round{k}")
        ctl = metrics("control-random-chain", f"round{k}")
        total_imp = (dense["epochs"] if k == 1 else metrics("imp-global", "round1")[
            "cumulative_epochs"]) + imp["epochs"]
        assert imp["cumulative_epochs"] == total_imp
        total += ctl["epochs"]
        assert ctl["cumulative_epochs"] == total
        assert imp["budget_epochs"] == ctl["budget_epochs"] == 2


def test_shuffle_reinit_and_dense_finetuned(chain, tmp_path, capsys):
    root, faces_a, run = chain

    imp2 = run / "imp-global" / "round2"
    ticket = checkpoints.load_mask(imp2 / "mask.pt")
    imp1_cum = json.loads((run / "imp-global" / "round1" / "metrics.json").read_text())[
        "cumulative_epochs"]
    out = run / "control-shuffle" / "round2"
    m = control(faces_a, imp2, run / "dense", out, "mesonet", 0, "shuffle", SPEC,
                       prev_dir=run / "imp-global" / "round1")
    check_ticket(out, 0.36)
    mask = checkpoints.load_mask(out / "mask.pt")
    assert all(int(mask[n].sum()) == int(ticket[n].sum()) for n in mask)
    assert not all(torch.equal(mask[n], ticket[n]) for n in mask)
    assert m["cumulative_epochs"] == imp1_cum + m["epochs"]  # the ticket's start weights
    with pytest.raises(UserError, match="--prev"):
        control(faces_a, imp2, run / "dense", tmp_path / "x", "mesonet", 0, "shuffle",
                       SPEC)
    with pytest.raises(UserError, match="round 1"):  # round 2 needs round 1 of its chain
        control(faces_a, imp2, run / "dense", tmp_path / "x", "mesonet", 0,
                       "random-chain", SPEC, prev_dir=run / "control-random-chain" / "round2")
    with pytest.raises(UserError, match="control-random-chain"):  # not IMP's round 1
        control(faces_a, imp2, run / "dense", tmp_path / "x", "mesonet", 0,
                       "random-chain", SPEC, prev_dir=run / "imp-global" / "round1")
    m = control(faces_a, imp2, run / "dense", tmp_path / "reinit", "mesonet", 0, "reinit",
                       SPEC)
    assert m["cumulative_epochs"] == m["epochs"]  # fresh weights

    faces_b = write_faces(root, "dsb", seed=2)
    out = root / "transfer" / "dsa-to-dsb" / "mesonet" / "seed0" / "dense-finetuned"
    assert cli.main(["transfer", "--faces", str(faces_b), "--finetune", str(run / "dense"),
                     "--out", str(out), "--model", "mesonet", "--seed", "0",
                     "--spec", json.dumps(SPEC)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    dense = json.loads((run / "dense" / "metrics.json").read_text())
    assert m["method"] == "dense-finetuned" and m["dataset"] == "dsb"
    assert m["source_dataset"] == "dsa" and m["sparsity"] == 0.0
    assert m["cumulative_epochs"] == dense["epochs"] + m["epochs"]
    assert not (out / "mask.pt").exists() and (out / "predictions.csv").is_file()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    start = torch.load(run / "dense" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(state["block1.conv.weight"], start["block1.conv.weight"])
    assert cli.main(["transfer", "--finetune", str(run / "dense"), "--out", str(tmp_path / "y"),
                     "--model", "mesonet"]) == 2
    assert "--finetune needs --faces" in capsys.readouterr().err


def test_shuffle_within_layers_keeps_counts_and_start_values():
    from deepfake_lth.stages.control import shuffle_within_layers

    gen = torch.Generator().manual_seed(0)
    mask = {"w": torch.rand(6, 5, generator=gen) > 0.6}
    start = {"w": torch.randn(6, 5, generator=gen) * mask["w"], "b": torch.ones(6)}
    new_mask, new_start = shuffle_within_layers(mask, start, seed=3)
    assert int(new_mask["w"].sum()) == int(mask["w"].sum())
    assert not torch.equal(new_mask["w"], mask["w"])
    assert torch.equal(new_start["w"].flatten().sort().values,
                       start["w"].flatten().sort().values)
    assert torch.equal((new_start["w"] != 0), new_mask["w"])  # the values moved with the mask
    assert new_start["b"] is start["b"]


# --------------------------------------------------------------------------- the claims' control


def validated_preset(name: str, tmp_path, **extra) -> dict:
    cfg = study_config.validate({**study_config.read_yaml(name), **extra})
    cfg["resources"] = str(tmp_path / "resources")
    return cfg


def folders(cfg, dataset, model, seed) -> set[str]:
    return {f"{lv.method}/{lv.path.name}"
            for lv in methods.planned_levels(cfg, dataset, model, seed)}


def test_the_paper_preset_plans_the_matched_control(tmp_path) -> None:
    cfg = validated_preset("config/paper.yaml", tmp_path)
    assert methods.MATCHED_CONTROL in cfg["controls"]
    planned = folders(cfg, "openforensics", "mesonet", 0)
    control = f"control-{methods.MATCHED_CONTROL}"
    assert {f"{control}/round{k}" for k in range(1, 9)} <= planned
    # the controls are of the ticket the claim judges
    assert methods.control_ticket_method(cfg) == "imp-global"


def test_winning_ticket_seeds_run_only_what_the_claim_compares(tmp_path) -> None:
    wt = {"dataset": "demo-images", "model": "mesonet", "seeds": [0, 1, 2]}
    cfg = validated_preset("config.yaml", tmp_path, claims={"winning_ticket": wt})
    base = validated_preset("config.yaml", tmp_path)
    control = f"control-{methods.MATCHED_CONTROL}"
    assert plan.planned_seeds(cfg, "demo-images", "mesonet") == [0, 1, 2]
    assert plan.planned_seeds(cfg, "demo-videos", "mesonet") == [0]
    assert plan.planned_seeds(cfg, "demo-images", "cnn5") == [0]
    # an extra seed: the dense network, IMP-Global up to round 4 (59 %, the claim's round)
    # and the random chain up to round 4; nothing else
    extra = folders(cfg, "demo-images", "mesonet", 1)
    assert extra == ({"dense/dense"} | {f"imp-global/round{k}" for k in range(1, 5)}
                     | {f"{control}/round{k}" for k in range(1, 5)})
    # seed 0 keeps everything it had, and gains the control's four rounds
    assert folders(cfg, "demo-images", "mesonet", 0) == (
        folders(base, "demo-images", "mesonet", 0) | {f"{control}/round{k}" for k in range(1, 5)})
    assert folders(cfg, "demo-videos", "mesonet", 0) == folders(base, "demo-videos", "mesonet", 0)
