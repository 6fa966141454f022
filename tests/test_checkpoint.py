"""Checkpoints: atomic under a crash, keep-last-k, tied weights, and clear errors for bad files."""
import pytest
import torch
from torch import nn

import selfsup.checkpoint as ck
from selfsup.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_weights
from selfsup.example import ExampleTask

from conftest import run_cli, train

SHORT = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.batch_size=16"]


def test_keep_last_k(tmp_run):
    train(ExampleTask, tmp_run, SHORT + ["trainer.keep_last=2"])
    assert [p.name for p in list_checkpoints(tmp_run / "checkpoints")] == ["step_00000004", "step_00000006"]


def test_crash_while_saving_keeps_previous_checkpoint(tmp_run, monkeypatch):
    real_save = torch.save

    def crash_on_step_4(obj, path, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 4:
            with open(path, "wb") as f:
                f.write(b"half a file")                   # torn write, then the process 'dies'
            raise OSError("disk full")
        return real_save(obj, path, *a, **k)
    monkeypatch.setattr(ck.torch, "save", crash_on_step_4)
    with pytest.raises(OSError, match="disk full"):
        train(ExampleTask, tmp_run, SHORT)
    root = tmp_run / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step_00000002"]   # no torn or temporary folder left
    monkeypatch.setattr(ck.torch, "save", real_save)
    summary = train(ExampleTask, tmp_run, SHORT, resume=True)     # resumes from step 2 and finishes
    assert summary["step"] == 6 and latest_checkpoint(root).name == "step_00000006"


def test_resume_without_checkpoint_and_fresh_run_over_checkpoints(tmp_run):
    with pytest.raises(CheckpointError, match="no checkpoint in .*start the run without --resume"):
        train(ExampleTask, tmp_run, SHORT, resume=True)
    train(ExampleTask, tmp_run, SHORT)
    with pytest.raises(CheckpointError, match="already holds checkpoints.*--resume"):
        train(ExampleTask, tmp_run, SHORT)
    assert len(list_checkpoints(tmp_run / "checkpoints")) == 3   # nothing deleted


def test_corrupt_weights_error_names_the_file(tmp_run):
    train(ExampleTask, tmp_run, SHORT)
    weights = latest_checkpoint(tmp_run / "checkpoints") / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{weights}.*truncated or corrupt"):
        train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8"], resume=True)
    state = weights.parent / "state.pt"
    weights.write_bytes(data)
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{state}.*cannot be loaded safely"):
        train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8"], resume=True)


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_run):
    train(ExampleTask, tmp_run, SHORT)
    with pytest.raises(CheckpointError,
                       match=r"(?s)does not match the model.*shape mismatch.*\(64, 16\) vs model \(32, 16\)"):
        train(ExampleTask, tmp_run, SHORT + ["task.hidden=32", "trainer.max_steps=8"], resume=True)
    with pytest.raises(CheckpointError, match=r"missing in checkpoint \(\d+\): body\.8\.weight"):
        train(ExampleTask, tmp_run, SHORT + ["task.depth=3", "trainer.max_steps=8"], resume=True)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight


def test_tied_weights_stored_once_and_restored(tmp_path):
    m = Tied()
    path = tmp_path / "w.safetensors"
    ck.save_weights(m.state_dict(), path)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        assert len(list(f.keys())) == 1
    m2 = Tied()
    m2.load_state_dict(load_weights(path, expected=m2.state_dict()))
    assert torch.equal(m2.out.weight, m.emb.weight) and m2.out.weight is m2.emb.weight


def test_rng_state_roundtrip_through_safe_load(tmp_path):
    import random

    import numpy as np
    state = ck.rng_state()
    torch.save({"rng": state}, tmp_path / "s.pt")
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


@pytest.mark.slow
def test_cli_eval_writes_results_and_rejects_bad_checkpoint(tmp_run, tmp_path):
    train(ExampleTask, tmp_run, SHORT)
    out = run_cli("eval", "example", "--checkpoint", str(tmp_run), "--run-dir", str(tmp_path / "ev"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ev" / "results.json").is_file() and "clusters/test accuracy" in out.stdout
    out = run_cli("eval", "example", "--checkpoint", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "ev"))
    assert out.returncode == 2 and "no checkpoint at" in out.stderr
