"""The low-rank family: its plan (methods, levels, folders), its job's spec, inputs and
command line from the config, and one job end to end on a tiny packed dataset: the dense
network factorized to a ticket's parameter count, fine-tuned, written with ranks.json, loaded
back by the analyses and quantized by the compression stage."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from test_stages import SPEC, write_faces

from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import lowrank as factor
from deepfake_lth.stages import lowrank, methods
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.family import LevelJob
from deepfake_lth.workflow import config as study_config
from deepfake_lth.workflow.jobs import level_outputs

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def demo_config(**lowrank_section) -> dict:
    cfg = study_config.read_yaml(ROOT / "config.yaml")
    cfg["lowrank"] = lowrank_section
    if not lowrank_section.get("models"):  # no low-rank networks for the demo's tickets
        cfg["compression"]["tickets"] = [t for t in cfg["compression"]["tickets"]
                                         if not t["method"].startswith("lowrank")]
    return study_config.validate(copy.deepcopy(cfg))


def job(method="lowrank-uniform", level="sparsity59", model="mesonet") -> LevelJob:
    return LevelJob("results", "demo-images", model, 0, method, level)


def test_off_unless_models_are_listed_and_only_for_those():
    off = demo_config()
    assert not any(m.startswith("lowrank") for m in methods.planned_methods(off))
    cfg = demo_config(models=["mesonet"], allocations=["uniform", "energy"],
                      sparsities=[0.5904, 0.7903])
    assert methods.planned_methods(cfg, "mesonet")[-2:] == ["lowrank-uniform", "lowrank-energy"]
    assert not any(m.startswith("lowrank") for m in methods.planned_methods(cfg, "cnn5"))
    levels = methods.method_levels(cfg, "demo-images", "mesonet", 0, "lowrank-energy")[1:]
    assert [(lv.path.as_posix(), lv.round) for lv in levels] == [
        ("results/demo-images/mesonet/seed0/lowrank-energy/sparsity59", 4),
        ("results/demo-images/mesonet/seed0/lowrank-energy/sparsity79", 7)]
    assert methods.label("lowrank-energy") == "Low-rank (energy)"
    assert methods.family_of("lowrank-uniform").name == "lowrank"
    assert methods.with_role(["imp-global", "lowrank-uniform"], lowrank.LOWRANK) == [
        "lowrank-uniform"]
    # no sparsities: the one-shot levels
    default = demo_config(models=["mesonet"])
    assert lowrank.sparsities(default) == [0.5904, 0.7903]


def test_the_job_reads_the_dense_network_and_writes_ranks():
    cfg = demo_config(models=["mesonet"], sparsities=[0.5904], multiple=2)
    fam = methods.BY_NAME["lowrank"]
    inputs = fam.inputs(cfg, job())
    assert inputs["checkpoint"] == "results/demo-images/mesonet/seed0/dense/checkpoint.pt"
    assert inputs["dense_metrics"].endswith("seed0/dense/metrics.json")
    assert "init" not in inputs and "mask" not in inputs
    out = level_outputs("results", fam)
    assert set(out) == {"checkpoint", "metrics", "ranks"}
    assert out["ranks"].endswith("/{method}/{level}/ranks.json")
    assert fam.arguments(cfg, job()) == [
        "--dense", "results/demo-images/mesonet/seed0/dense", "--sparsity", "0.5904",
        "--allocation", "uniform", "--multiple", "2"]
    with pytest.raises(ValueError, match="sparsity79"):
        fam.arguments(cfg, job(level="sparsity79"))


def test_the_spec_is_one_round_of_epochs_trained_exactly():
    cfg = demo_config(models=["mesonet"], sparsities=[0.5904])
    spec = methods.BY_NAME["lowrank"].spec(cfg, job())
    # prune.retrain_epochs under rewind none, all of them (prune.budget: exact)
    retrain = cfg["prune"]["retrain_epochs"]
    assert cfg["prune"]["rewind"] == "none" and retrain >= 1
    assert spec["train"]["max_epochs"] == spec["train"]["min_epochs"] == retrain
    assert spec["prune"] == {"rate": 0.2} and spec["input_size"] == 64
    matched = demo_config(models=["mesonet"], sparsities=[0.5904], budget="matched")
    # matched: the 4 rounds' epochs IMP spent reaching 59 %
    assert methods.BY_NAME["lowrank"].spec(matched, job())["train"]["max_epochs"] == 4 * retrain
    cfg["prune"]["budget"] = "early-stopping"
    assert methods.BY_NAME["lowrank"].spec(cfg, job())["train"]["min_epochs"] != 3


def test_the_schema_holds_the_section_and_compression_takes_its_tickets():
    schema = study_config.load_schema()["properties"]
    alloc = schema["lowrank"]["properties"]["allocations"]["items"]["enum"]
    assert tuple(alloc) == lowrank.ALLOCATIONS == factor.ALLOCATIONS
    cfg = demo_config(models=["cnn5"], sparsities=[0.5904])
    cfg["compression"]["tickets"] = [{"method": "lowrank-uniform", "sparsity": 0.5904}]
    study_config.validate(cfg)
    with pytest.raises(UserError, match="lowrank"):
        demo_config(models=["mesonet"], allocations=["svd"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    faces = write_faces(root, "dsa", seed=1)
    run = root / "dsa" / "mesonet" / "seed0"
    train_dense(faces, run / "dense", "mesonet", 0, SPEC)
    out = run / "lowrank-uniform" / "sparsity59"
    metrics = lowrank.lowrank(faces, run / "dense", out, "mesonet", 0, 0.5904, "uniform", SPEC)
    return faces, run, out, metrics


def test_a_job_factorizes_to_a_tickets_parameters_and_fine_tunes(trained):
    faces, run, out, m = trained
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "metrics.json", "ranks.json",
                                               "predictions.csv"}
    assert not (out / "mask.pt").exists()
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks == m["ranks"] and ranks and all(r >= 1 for r in ranks.values())
    dense = json.loads((run / "dense" / "metrics.json").read_text())
    ticket_params = dense["params_total"] - 0.5904 * dense["prunable_total"]
    # at most a ticket's parameters, within the rounding of one rank of the widest layer
    assert m["params_total"] <= ticket_params
    assert m["sparsity"] >= 0.5904 and m["sparsity"] < 0.5904 + 0.03
    assert m["sparsity"] == pytest.approx(
        (dense["params_total"] - m["params_total"]) / dense["prunable_total"])
    assert (m["method"], m["target_sparsity"], m["round"]) == ("lowrank-uniform", 0.5904, 4)
    assert m["epochs"] == SPEC["train"]["max_epochs"]
    assert m["cumulative_epochs"] == dense["cumulative_epochs"] + m["epochs"]
    assert 0.0 <= m["test_auc"] <= 1.0
    # the analyses load it through load_network: the factorized network, its test scores
    from deepfake_lth.data.store import load_split
    from deepfake_lth.stages.spec import parse_spec
    from deepfake_lth.training.evaluate import evaluate

    net = lowrank.load_network(out, "mesonet", SPEC).eval()
    assert factor.ranks_of(net) == ranks
    test = evaluate(net, load_split(faces, "test"), 32, torch.device("cpu"), 64, False)
    assert test["auc"] == pytest.approx(m["test_auc"])
    dense_net = lowrank.load_network(run / "dense", "mesonet", parse_spec(SPEC))
    assert factor.ranks_of(dense_net) == {}


def test_a_damaged_ranks_file_is_named(trained, tmp_path):
    _, _, out, _ = trained
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    (bad / "ranks.json").write_text('{"block1.conv": "two"}')
    with pytest.raises(UserError, match="ranks.json"):
        lowrank.load_network(bad, "mesonet", SPEC)
    (bad / "ranks.json").unlink()  # without its ranks the factorized state fits no model
    with pytest.raises(UserError, match="does not fit"):
        lowrank.load_network(bad, "mesonet", SPEC)
    with pytest.raises(UserError, match="sparsity"):
        lowrank.lowrank(tmp_path, out, tmp_path / "x", "mesonet", 0, 1.2, "uniform", SPEC)


def test_the_compression_stage_quantizes_a_low_rank_network(trained):
    pytest.importorskip("onnxruntime")
    from deepfake_lth.deploy import quantize

    faces, _, out, m = trained
    spec = {"calibration_samples": 24, "batch_sizes": [1], "warmup": 1, "repeats": 2}
    q = quantize.quantize_stage(faces, out, out / "int8", spec)
    assert q["method"] == "lowrank-uniform" and q["sparsity"] == pytest.approx(m["sparsity"])
    # the fp32 ONNX model scores the test split as the checkpoint does
    assert q["fp32"]["auc"] == pytest.approx(m["test_auc"], abs=1e-3)
    assert 0.0 <= q["int8"]["auc"] <= 1.0 and q["bytes"]["onnxz_fp32"] > 0


def test_a_dense_and_low_rank_study_needs_no_imp_rounds():
    """Low-rank levels are sparsities of their own: with no IMP rounds they still exist and
    compression may quantize them; at the one-shot levels (none without rounds) they do not."""
    cfg = study_config.read_yaml(ROOT / "config.yaml")
    cfg.update(lowrank={"models": ["cnn5"], "sparsities": [0.5904]},
               prune={**cfg["prune"], "rounds": 0, "criteria": []}, oneshot={"criteria": []},
               transfer={"pairs": []}, gradcam={"methods": []}, latency={"methods": []},
               kd={"models": []}, robustness={"methods": []},
               compression={**cfg["compression"], "models": ["cnn5"],
                            "tickets": [{"method": "lowrank-uniform", "sparsity": 0.5904}]})
    valid = study_config.validate(copy.deepcopy(cfg))
    assert methods.planned_methods(valid, "cnn5") == ["lowrank-uniform"]
    cfg["lowrank"]["sparsities"] = []
    with pytest.raises(UserError, match=r"'compression.tickets' \(lowrank-uniform\)"):
        study_config.validate(copy.deepcopy(cfg))
