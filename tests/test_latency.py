"""The latency stage: dense, unstructured and structured (compacted) tickets side by side."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from deepfake_lth import cli
from deepfake_lth.analysis import latency
from deepfake_lth.core.errors import UserError
from deepfake_lth.models import build_model
from deepfake_lth.pruning import masks, plan, structured

SIZE = 32


def _level(folder, model, **metrics):
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "checkpoint.pt")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture()
def run(tmp_path):
    torch.manual_seed(0)
    dense = build_model("cnn5", input_size=SIZE)
    _level(tmp_path / "dense", dense, sparsity=0.0)
    unstructured = build_model("cnn5", input_size=SIZE)
    unstructured.load_state_dict(dense.state_dict())
    mask = masks.prune_to_sparsity(unstructured, 0.8, "global")
    masks.apply_mask(unstructured, mask)
    _level(tmp_path / "imp-global" / "round7", unstructured, sparsity=masks.sparsity(mask))
    channel = build_model("cnn5", input_size=SIZE)
    channel.load_state_dict(dense.state_dict())
    cmask = structured.channel_mask(channel, None, 0.5, "local")
    wmask = structured.apply_channel_mask(channel, cmask)
    folder = _level(tmp_path / "structured-local" / "round3", channel,
                    sparsity=masks.sparsity(wmask))
    structured.save_channels(folder / "channels.pt", cmask)
    levels = [{"method": "dense", "level": "dense", "path": str(tmp_path / "dense")},
              {"method": "imp-global", "level": "round7",
               "path": str(tmp_path / "imp-global" / "round7")},
              {"method": "structured-local", "level": "round3", "path": str(folder)}]
    return tmp_path, levels, cmask


def test_times_every_level_at_every_batch_size(run):
    tmp_path, levels, cmask = run
    out = tmp_path / "latency" / "latency.csv"
    spec = {"input_size": SIZE, "batch_sizes": [1, 3], "repeats": 3, "warmup": 1}
    df = latency.latency_stage(json.dumps(levels), "cnn5", out, json.dumps(spec))
    assert list(df.columns) == latency.COLUMNS
    assert pd.read_csv(out).shape == (6, len(latency.COLUMNS))
    assert sorted(df["batch"].unique()) == [1, 3] and set(df["threads"]) == {1}
    by = {(r.level, r.batch): r for r in df.itertuples()}
    for batch in (1, 3):
        assert by[("dense", batch)].speedup_vs_dense == 1.0
        dense, masked, compact = by[("dense", batch)], by[("round7", batch)], by[("round3", batch)]
        # an unstructured ticket is the dense network with zeros: the same size and work
        assert masked.params == dense.params and masked.macs == dense.macs
        assert masked.sparsity == pytest.approx(0.8, abs=0.005) and masked.channel_sparsity == 0
        # a structured ticket is compacted: fewer parameters and MACs
        assert compact.channel_sparsity == pytest.approx(structured.channel_sparsity(cmask))
        assert compact.params < 0.35 * dense.params and compact.macs < 0.35 * dense.macs
        for r in (dense, masked, compact):
            assert 0 < r.min_ms <= r.median_ms
            assert r.speedup_vs_dense == pytest.approx(dense.median_ms / r.median_ms)
            assert 0 < r.speedup_low <= r.speedup_high  # the spread over the rounds
        assert dense.speedup_low == dense.speedup_high == 1.0  # dense against itself


def test_count_macs_of_a_conv_and_a_linear():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 2))
    assert latency.count_macs(net, 8) == 4 * 8 * 8 * 3 * 9 + 2 * 4 * 8 * 8


def test_bad_input_is_a_user_error(run, tmp_path, capsys):
    _, levels, _ = run
    with pytest.raises(UserError, match="does not fit mesonet"):
        latency.latency_stage(levels, "mesonet", tmp_path / "x.csv", {"input_size": SIZE})
    with pytest.raises(UserError, match="unknown key.*repeat\\b"):
        latency.latency_stage(levels, "cnn5", tmp_path / "x.csv", {"repeat": 3})
    with pytest.raises(UserError, match="batch_sizes"):
        latency.parse_spec({"batch_sizes": [0]})
    with pytest.raises(UserError, match='has no "path"'):
        plan.parse_levels([{"level": "dense"}])
    missing = [{"method": "dense", "path": str(tmp_path / "nowhere")}]
    rc = cli.main(["latency", "--levels", json.dumps(missing), "--model", "cnn5", "--out",
                   str(tmp_path / "x.csv")])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_fast_networks_get_more_rounds_up_to_ten_times():
    net = torch.nn.Conv2d(3, 2, 1).eval()
    x = torch.zeros(1, 3, 4, 4)
    assert [len(t) for t in latency.time_models([net, net], x, 0, 3)] == [3, 3]
    # a forward of a 1×1 conv takes microseconds: 0.5 s is not reached in 30 rounds
    assert [len(t) for t in latency.time_models([net], x, 0, 3, min_seconds=0.5)] == [30]
    with pytest.raises(UserError, match="min_seconds"):
        latency.parse_spec({"min_seconds": -1})


def test_ratio_spread_of_paired_rounds():
    from deepfake_lth.analysis.latency import ratio_spread

    dense = [1.0] * 40
    same = [1.0 + 0.05 * ((i % 5) - 2) for i in range(40)]  # the same work, some jitter
    low, high = ratio_spread(dense, same)
    assert low < 1.0 < high  # "no difference"
    faster = [0.5] * 40
    assert ratio_spread(dense, faster) == (2.0, 2.0)
    assert ratio_spread([1.0], [0.5]) == (2.0, 2.0)
