"""The lottery-ticket stages end to end on a tiny generated packed dataset (mesonet, 32 px)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from deepfake_lth import cli
from deepfake_lth.core.errors import UserError
from deepfake_lth.pruning import checkpoints, masks
from deepfake_lth.stages.control import control
from deepfake_lth.stages.dense import train_dense
from deepfake_lth.stages.imp import imp_round
from deepfake_lth.stages.kd import kd_round
from deepfake_lth.stages.methods import CONTROLS
from deepfake_lth.stages.oneshot import oneshot
from deepfake_lth.stages.spec import parse_spec
from deepfake_lth.stages.transfer import transfer, transfer_dense

torch.set_num_threads(1)

KEYS = {
    "dataset",
    "model",
    "seed",
    "method",
    "criterion",
    "round",
    "sparsity",
    "target_sparsity",
    "params_total",
    "params_nonzero",
    "prunable_total",
    "prunable_nonzero",
    "test_acc",
    "test_auc",
    "test_eer",
    "test_ap",
    "video_acc",
    "video_auc",
    "video_eer",
    "video_ap",
    "val_acc",
    "val_loss",
    "epochs",
    "best_epoch",
    "train_seconds",
    "device",
    "rewind",
    "history",
}
SPEC = {
    "train": {"lr": 1e-3, "batch_size": 16, "max_epochs": 2, "patience": 2, "amp": False},
    "prune": {"rate": 0.2, "rewind": "none"},
    "input_size": 32,
    "device": "cpu",
    "threads": 1,
}


def write_faces(root, dataset: str, seed: int, videos: int = 8, frames: int = 4):
    """A packed dataset per data.py: faces.npy (N×32×32×3 uint8) + manifest.csv."""
    rng = np.random.default_rng(seed)
    folder = root / dataset / "faces"
    folder.mkdir(parents=True)
    checker = (np.indices((32, 32)).sum(0) % 2)[..., None] * 50.0
    images, rows = [], []
    splits = ["train"] * (videos - 4) + ["val", "val", "test", "test"]
    for v in range(videos):
        label = v % 2
        for f in range(frames):
            img = rng.uniform(70, 180) + rng.normal(0, 15, (32, 32, 3)) + label * checker
            rows.append(
                {
                    "index": len(images),
                    "video_id": f"{dataset}-{v}",
                    "label": label,
                    "split": splits[v],
                    "frame_index": f,
                    "source": f"{dataset}-{v}.mp4",
                }
            )
            images.append(np.clip(img, 0, 255).astype(np.uint8))
    np.save(folder / "faces.npy", np.stack(images))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def strict_json(path) -> dict:
    def reject(name):
        raise AssertionError(f"{path}: non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=reject)


def check_ticket(folder, expected_sparsity: float | None = None) -> dict:
    """Files present, metrics complete, checkpoint zeros exactly where the mask is False."""
    metrics = strict_json(folder / "metrics.json")
    assert KEYS <= set(metrics), KEYS - set(metrics)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    mask = checkpoints.load_mask(folder / "mask.pt")
    for name, m in mask.items():
        assert torch.equal(state[name] == 0, ~m), name
    assert metrics["sparsity"] == pytest.approx(masks.sparsity(mask))
    assert metrics["prunable_nonzero"] == masks.mask_counts(mask)[0]
    if expected_sparsity is not None:
        assert abs(metrics["sparsity"] - expected_sparsity) < 0.005
    assert not list(folder.glob(".*tmp"))  # no half-written files
    # the video scores recomputed from predictions.csv (scikit-learn) match metrics.json
    pred = pd.read_csv(folder / "predictions.csv")
    videos = pred.groupby("video_id").agg(prob=("prob", "mean"), label=("label", "max"))
    assert metrics["video_auc"] == pytest.approx(roc_auc_score(videos["label"], videos["prob"]))
    assert metrics["test_ap"] == pytest.approx(average_precision_score(pred["label"], pred["prob"]))
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(pred["label"], pred["prob"]))
    return metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return root, write_faces(root, "dsa", seed=1), write_faces(root, "dsb", seed=2)


def test_dense_imp_oneshot_controls_transfer(data) -> None:
    root, faces_a, faces_b = data
    run = root / "dsa" / "mesonet" / "seed0"
    dense = train_dense(faces_a, run / "dense", "mesonet", 0, SPEC)
    assert {"init.pt", "checkpoint.pt", "metrics.json"} <= {
        p.name for p in (run / "dense").iterdir()
    }
    assert KEYS <= set(dense)
    assert dense["method"] == "dense" and dense["criterion"] is None and dense["round"] == 0
    assert dense["sparsity"] == 0.0 and dense["dataset"] == "dsa" and dense["epochs"] == 2
    assert dense["params_total"] == dense["params_nonzero"] > dense["prunable_total"]
    assert len(dense["history"]) == 2 and 0 <= dense["test_acc"] <= 1

    prev = run / "dense"
    round_masks = []
    for k in (1, 2):
        out = run / "imp-global" / f"round{k}"
        m = imp_round(faces_a, prev, run / "dense", out, "mesonet", 0, k, "global", SPEC)
        assert m["method"] == "imp-global" and m["round"] == k and m["criterion"] == "global"
        assert m["target_sparsity"] == pytest.approx(1 - 0.8**k)
        check_ticket(out, 1 - 0.8**k)
        round_masks.append(checkpoints.load_mask(out / "mask.pt"))
        prev = out
    assert all(not (round_masks[1][n] & ~round_masks[0][n]).any() for n in round_masks[0])  # nested
    with pytest.raises(UserError, match="round 1"):  # round 3 must follow round 2
        imp_round(
            faces_a,
            run / "imp-global" / "round1",
            run / "dense",
            run / "x",
            "mesonet",
            0,
            3,
            "global",
            SPEC,
        )

    out = run / "imp-local" / "round1"
    imp_round(faces_a, run / "dense", run / "dense", out, "mesonet", 0, 1, "local", SPEC)
    for n, s in masks.layer_sparsity(checkpoints.load_mask(out / "mask.pt")).items():
        assert abs(s - 0.2) < 0.07, (n, s)  # fc2 has only 16 weights

    one = oneshot(
        faces_a,
        run / "dense",
        run / "oneshot-global" / "sparsity36",
        "mesonet",
        0,
        0.36,
        "global",
        SPEC,
    )
    assert one["method"] == "oneshot-global" and one["round"] == 2
    check_ticket(run / "oneshot-global" / "sparsity36", 0.36)

    imp2 = run / "imp-global" / "round2"
    imp_mask = checkpoints.load_mask(imp2 / "mask.pt")
    imp1_mask = checkpoints.load_mask(run / "imp-global" / "round1" / "mask.pt")
    for name in [c for c in CONTROLS if c != "random-chain"]:  # the chain: test_controls.py
        out = run / f"control-{name}" / "round2"
        m = control(faces_a, imp2, run / "dense", out, "mesonet", 0, name, SPEC,
                           prev_dir=run / "imp-global" / "round1")
        assert m["method"] == f"control-{name}" and m["round"] == 2
        check_ticket(out, 0.36)
        mask = checkpoints.load_mask(out / "mask.pt")
        same = all(torch.equal(mask[n], imp_mask[n]) for n in mask)
        assert same == (name == "reinit")
        assert all(int(mask[n].sum()) == int(imp_mask[n].sum()) for n in mask)
        if name == "random-prune-trained":  # pruned at random among round 1's survivors
            assert all(not (mask[n] & ~imp1_mask[n]).any() for n in mask)
            assert m["control_prev"].endswith("round1")

    tdir = root / "transfer" / "dsa-to-dsb" / "mesonet" / "seed0"
    tmp = root / "frozen"
    train_dense(faces_b, root / "dsb" / "mesonet" / "seed0" / "dense", "mesonet", 0, SPEC)
    for weights in ("trained", "init"):
        out = tdir / f"imp-global-sparsity36-{weights}"
        m = transfer(faces_b, imp2, run / "dense", out, "mesonet", 0, weights, SPEC)
        assert m["dataset"] == "dsb" and m["source_dataset"] == "dsa"
        assert m["method"] == "imp-global" and m["weights"] == weights
        metrics = check_ticket(out, 0.36)
        moved = checkpoints.load_mask(out / "mask.pt")  # A's mask, unchanged
        assert all(torch.equal(moved[n], imp_mask[n]) for n in imp_mask)
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        start = torch.load(
            imp2 / "checkpoint.pt" if weights == "trained" else run / "dense" / "init.pt",
            weights_only=True,
        )
        assert not torch.equal(state["block1.conv.weight"], start["block1.conv.weight"])
        # with lr 0 the weights stay where transfer started them: θ2 = m1 ⊙ θ1 (or m1 ⊙ θ0)
        frozen = {**SPEC, "train": {**SPEC["train"], "lr": 0.0, "max_epochs": 1}}
        transfer(faces_b, imp2, run / "dense", tmp / weights, "mesonet", 0, weights, frozen)
        state = torch.load(tmp / weights / "checkpoint.pt", weights_only=True)
        expected = masks.mask_state(start, imp_mask)
        for n, p in expected.items():
            if not n.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert torch.equal(state[n], p), n  # every parameter; BN statistics move
        assert metrics["test_samples"] == 8
    base = transfer_dense(
        root / "dsb" / "mesonet" / "seed0" / "dense", tdir / "dense", "dsa"
    )
    assert base["method"] == "dense" and base["dataset"] == "dsb"
    assert base["source_dataset"] == "dsa" and (tdir / "dense" / "checkpoint.pt").is_file()


def _start_weights(data, rewind: str, tmp_path):
    """With lr 0 training leaves the weights where they started: the rewound, masked ones."""
    _root, faces_a, _ = data
    spec = {**SPEC, "train": {**SPEC["train"], "lr": 0.0}, "prune": {"rate": 0.2, "rewind": rewind}}
    dense = tmp_path / "dense"
    train_dense(faces_a, dense, "mesonet", 3, {**spec, "train": SPEC["train"]})
    out = tmp_path / "round1"
    imp_round(faces_a, dense, dense, out, "mesonet", 3, 1, "global", spec)
    mask = checkpoints.load_mask(out / "mask.pt")
    got = torch.load(out / "checkpoint.pt", weights_only=True)
    return dense, mask, got


@pytest.mark.parametrize("rewind", ["none", "init", "epoch:1"])
def test_rewind_modes_set_the_start_weights(data, rewind: str, tmp_path) -> None:
    dense, mask, got = _start_weights(data, rewind, tmp_path)
    source = {"none": "checkpoint.pt", "init": "init.pt", "epoch:1": "epoch1.pt"}[rewind]
    expected = masks.mask_state(torch.load(dense / source, weights_only=True), mask)
    for n in mask:
        assert torch.equal(got[n], expected[n]), n
    # and the mask came from the trained dense weights, whatever the rewind
    trained = torch.load(dense / "checkpoint.pt", weights_only=True)
    dense_mask = {n: torch.ones_like(m) for n, m in mask.items()}
    from_trained = masks.magnitude_prune(trained, dense_mask, 0.2, "global")
    assert all(torch.equal(mask[n], from_trained[n]) for n in mask)


def test_same_seed_same_metrics(data, tmp_path) -> None:
    _, faces_a, _ = data
    runs = [train_dense(faces_a, tmp_path / f"r{i}", "mesonet", 7, SPEC) for i in (0, 1)]
    drop = {"train_seconds", "history"}
    a, b = ({k: v for k, v in r.items() if k not in drop} for r in runs)
    assert a == b
    assert [h["val_loss"] for h in runs[0]["history"]] == [
        h["val_loss"] for h in runs[1]["history"]
    ]


def test_cli_and_bad_input(data, tmp_path, capsys) -> None:
    _, faces_a, _ = data
    out = tmp_path / "dense"
    assert (
        cli.main(
            [
                "train",
                "--faces",
                str(faces_a),
                "--out",
                str(out),
                "--model",
                "mesonet",
                "--seed",
                "0",
                "--spec",
                json.dumps(SPEC),
            ]
        )
        == 0
    )
    assert strict_json(out / "metrics.json")["method"] == "dense"
    bad = {**SPEC, "prune": {"rate": 0.2, "rounds": 8}}
    assert (
        cli.main(
            [
                "oneshot",
                "--faces",
                str(faces_a),
                "--out",
                str(tmp_path / "o"),
                "--model",
                "mesonet",
                "--dense",
                str(out),
                "--sparsity",
                "0.5",
                "--criterion",
                "global",
                "--spec",
                json.dumps(bad),
            ]
        )
        == 2
    )
    assert "spec.prune: unknown key(s) rounds" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "imp-round",
                "--faces",
                str(faces_a),
                "--out",
                str(tmp_path / "r"),
                "--model",
                "mesonet",
                "--prev",
                str(tmp_path / "nowhere"),
                "--dense",
                str(out),
                "--round",
                "1",
                "--criterion",
                "local",
                "--spec",
                "{",
            ]
        )
        == 2
    )
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(UserError, match="metrics.json is missing"):
        imp_round(
            faces_a, tmp_path / "nowhere", out, tmp_path / "r", "mesonet", 0, 1, "local", SPEC
        )
    assert not math.isnan(parse_spec({}).prune.rate)


def test_kd_rounds_distill_from_the_dense_network(data) -> None:
    """KD round k prunes like IMP round k (same mask from the same previous weights) and trains
    with the teacher's soft targets: another network than plain IMP's, recorded as kd-global."""
    from deepfake_lth.stages.methods import family_of, label
    from deepfake_lth.training.fit import Distillation

    root, faces_a, _ = data
    run = root / "dsa" / "mesonet" / "seed0"
    if not (run / "dense" / "checkpoint.pt").is_file():
        train_dense(faces_a, run / "dense", "mesonet", 0, SPEC)
    spec = {**SPEC, "distill": {"temperature": 2.0, "weight": 0.7}}
    m = kd_round(faces_a, run / "dense", run / "dense", run / "kd-global" / "round1",
                        "mesonet", 0, 1, "global", spec)
    assert m["method"] == "kd-global" and m["round"] == 1
    assert (m["kd_temperature"], m["kd_weight"]) == (2.0, 0.7)
    assert family_of("kd-global").name == "kd" and label("kd-global") == "KD IMP-Global"
    check_ticket(run / "kd-global" / "round1", 0.2)
    imp = imp_round(faces_a, run / "dense", run / "dense", run / "imp-x" / "round1",
                           "mesonet", 0, 1, "global", SPEC)
    kd_mask = checkpoints.load_mask(run / "kd-global" / "round1" / "mask.pt")
    imp_mask = checkpoints.load_mask(run / "imp-x" / "round1" / "mask.pt")
    assert all(torch.equal(kd_mask[k], imp_mask[k]) for k in kd_mask)
    kd_w = torch.load(run / "kd-global" / "round1" / "checkpoint.pt", weights_only=True)
    imp_w = torch.load(run / "imp-x" / "round1" / "checkpoint.pt", weights_only=True)
    assert any(not torch.equal(kd_w[k], imp_w[k]) for k in kd_mask)
    assert m["test_loss"] != imp["test_loss"]
    # the blended loss: weight 0 is the label loss; the soft term pulls towards the teacher
    teacher = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.ones(8)
    z = torch.zeros(8, requires_grad=True)
    label_loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    assert torch.equal(Distillation(teacher, 2.0, 0.0).blend(label_loss, z, x), label_loss)
    soft = torch.sigmoid(teacher(x)[:, 0] / 2.0).detach()
    full = Distillation(teacher, 2.0, 1.0).blend(label_loss, z, x)
    expected = 4.0 * torch.nn.functional.binary_cross_entropy_with_logits(z / 2.0, soft)
    assert torch.allclose(full, expected)
    with pytest.raises(UserError, match="temperature"):
        Distillation(teacher, 0.0, 0.5)
