"""deepfake_lth.training.resume: keyed resume states, where they live, RNG round trips, signals."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_lth.training import resume
from deepfake_lth.training.resume import (
    ResumeState,
    StopRequested,
    StopSignals,
    capture_rng,
    restore_rng,
    resume_key,
    state_path,
)


def _payload() -> dict:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    return {"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "best": float("inf"), "history": [{"epoch": 1, "val_loss": 0.5}],
            "rng": capture_rng()}


def test_save_then_load_returns_the_payload(tmp_path):
    state = ResumeState(tmp_path / ".resume" / "a" / "state.pt", key="k1")
    payload = _payload()
    state.save(payload)
    loaded = ResumeState(state.path, key="k1").load()
    assert loaded is not None
    assert loaded["epoch"] == 3 and loaded["history"] == payload["history"]
    assert torch.equal(loaded["model"]["weight"], payload["model"]["weight"])
    # the file loads without pickle's arbitrary objects
    raw = torch.load(state.path, weights_only=True)
    assert raw["key"] == "k1"


def test_key_mismatch_is_a_logged_fresh_start(tmp_path, caplog):
    path = tmp_path / "state.pt"
    ResumeState(path, key="old").save({"epoch": 1})
    with caplog.at_level(logging.INFO, logger="deepfake_lth.training.resume"):
        assert ResumeState(path, key="new").load() is None
    assert "another spec/code/input: fresh start" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepfake_lth.training.resume"):
        assert ResumeState(tmp_path / "missing.pt", key="new").load() is None
    assert "no state" in caplog.text


def test_unreadable_state_is_a_fresh_start(tmp_path, caplog):
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="deepfake_lth.training.resume"):
        assert ResumeState(path, key="k").load() is None
    assert "unreadable" in caplog.text


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save killed mid-write leaves the previous state whole and no stray file."""
    path = tmp_path / "state.pt"
    state = ResumeState(path, key="k")
    state.save({"epoch": 1})

    def broken(obj, fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        state.save({"epoch": 2})
    monkeypatch.undo()
    assert ResumeState(path, key="k").load() == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_clear_removes_the_state_and_its_empty_folders(tmp_path):
    results = tmp_path / "results"
    (results / "keep.txt").parent.mkdir()
    (results / "keep.txt").write_text("x")
    path = state_path(results / "demo" / "mesonet" / "seed0" / "imp-global" / "round2")
    other = ResumeState(state_path(results / "demo" / "mesonet" / "seed1" / "dense"), "k")
    other.save({"epoch": 1})
    state = ResumeState(path, "k")
    state.save({"epoch": 1})
    (path.parent / ".state.pt.abc123.tmp").write_bytes(b"half")  # a save killed mid-write
    state.clear()
    assert not path.exists()
    assert not (results / ".resume" / "demo" / "mesonet" / "seed0").exists()
    assert other.path.is_file()  # a neighbour's state stays
    other.clear()
    assert not (results / ".resume").exists()
    assert (results / "keep.txt").is_file()
    state.clear()  # clearing twice is fine


def test_state_lives_outside_the_job_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(resume.RESUME_DIR_ENV, raising=False)
    r = tmp_path / "results"
    assert state_path(r / "ds" / "xception" / "seed2" / "dense") == (
        r / ".resume" / "ds" / "xception" / "seed2" / "dense" / "state.pt")
    assert state_path(r / "transfer" / "a-to-b" / "cnn5" / "seed0" / "imp-global-round2") == (
        r / ".resume" / "transfer" / "a-to-b" / "cnn5" / "seed0" / "imp-global-round2"
        / "state.pt")
    # a folder outside the path scheme: a hidden sibling
    assert state_path(tmp_path / "run") == tmp_path / ".resume" / "run" / "state.pt"
    # relative folders resolve against the working directory
    monkeypatch.chdir(tmp_path)
    assert state_path("results/ds/m/seed0/dense") == (
        r / ".resume" / "ds" / "m" / "seed0" / "dense" / "state.pt")
    monkeypatch.setenv(resume.RESUME_DIR_ENV, str(tmp_path / "scratch"))
    assert state_path(r / "ds" / "m" / "seed0" / "dense") == (
        tmp_path / "scratch" / "ds" / "m" / "seed0" / "dense" / "state.pt")


def test_key_follows_spec_inputs_and_weights(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"weights-1")
    weights = {"w": torch.zeros(3)}
    base = {"stage": "imp-round", "spec": {"train": {"lr": 1e-4}}, "init": weights, "seed": 0,
            "out": tmp_path / "out"}
    key = resume_key(inputs=[ckpt], **base)
    assert key == resume_key(inputs=[ckpt], **base)
    assert key != resume_key(inputs=[ckpt], **{**base, "spec": {"train": {"lr": 1e-3}}})
    assert key != resume_key(inputs=[ckpt], **{**base, "init": {"w": torch.ones(3)}})
    assert key != resume_key(inputs=[ckpt], **{**base, "seed": 1})
    ckpt.write_bytes(b"weights-2")
    assert key != resume_key(inputs=[ckpt], **base)
    with pytest.raises(TypeError, match="not part of a key"):
        resume_key(stage=object())


def test_large_inputs_are_identified_by_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "HASH_LIMIT_BYTES", 4)
    big = tmp_path / "faces.npy"
    big.write_bytes(b"0123456789")
    ident = resume.file_identity(big)
    assert ident == {"size": 10, "mtime_ns": big.stat().st_mtime_ns}
    os.utime(big, ns=(0, big.stat().st_mtime_ns + 10**9))
    assert resume.file_identity(big) != ident


def test_rng_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    # through a file loaded with weights_only, as a resumed job reads it
    ResumeState(tmp_path / "s.pt", "k").save({"rng": state})
    state = ResumeState(tmp_path / "s.pt", "k").load()["rng"]
    first = (random.random(), np.random.rand(4).tolist(), torch.rand(4))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(state)
    again = (random.random(), np.random.rand(4).tolist(), torch.rand(4))
    assert first[0] == again[0] and first[1] == again[1]
    assert torch.equal(first[2], again[2])


def test_sigterm_sets_the_flag_and_handlers_come_back(caplog):
    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger="deepfake_lth.training.resume"), StopSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        assert stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a second TERM: still stopping, no raise
    assert "SIGTERM received" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_sigint_interrupts_at_once():
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with StopSignals() as stop:
            seen.append((stop.requested, signal.getsignal(signal.SIGTERM) is before))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [(False, True)]


def test_stop_message_says_how_to_resume(tmp_path):
    state = ResumeState(tmp_path / "state.pt", "k")
    state.save({"epoch": 4})
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
    exc = stop.stopped(StopRequested("stopped after epoch 4"), state)
    assert str(exc) == (f"stopped by SIGTERM after epoch 4; state saved to {state.path}; "
                        "rerun the same command to resume")
    assert exc.exit_code == 128 + signal.SIGTERM
    assert isinstance(exc.state, Path) and exc.epoch == 4
