"""Checkpoints: atomic under a crash, keep-last-k, tied weights, and clear errors for bad files."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

import selfsup.checkpoint as ck
import selfsup.rng as rng
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


def flip_byte(path, offset=-9):
    """Garble one byte in place: same size, and (in a weights file) still loadable unless checked."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_garbled_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_run):
    train(ExampleTask, tmp_run, SHORT + ["trainer.log_every=1"])                          # checkpoints at steps 2, 4, 6
    root = tmp_run / "checkpoints"
    flip_byte(root / "step_00000006" / "model.safetensors")     # a weight's bytes, not the header
    with pytest.warns(UserWarning, match=r"skipping damaged checkpoint step_00000006: .*model.safetensors does not "
                                         r"match the sha256 recorded in .*meta.json"):
        summary = train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8", "trainer.log_every=1"], resume=True)
    assert summary["step"] == 8
    steps = [json.loads(line)["step"] for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]                    # resumed from step 4, the log cut back to it
    for ckpt in list_checkpoints(root):                          # step 6 written again, intact
        ck.verify_checkpoint(ckpt)


def test_damaged_files_are_refused_by_name_never_loaded(tmp_run, tmp_path):
    train(ExampleTask, tmp_run, SHORT)
    root = tmp_run / "checkpoints"
    (root / "step_00000006" / "state.pt").write_bytes(b"")                  # an empty state
    (root / "step_00000004" / "meta.json").write_text("[1, 2]")              # meta that is not an object
    flip_byte(root / "step_00000002" / "state.pt")
    with pytest.warns(UserWarning) as caught:
        with pytest.raises(CheckpointError, match=r"(?s)no intact checkpoint in .*checkpoints.*state.pt.*"
                                                  r"meta.json is not a selfsup checkpoint's meta.json.*state.pt"):
            train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8"], resume=True)
    assert len(caught) == 3
    # an explicitly named checkpoint is checked, not swapped for another: eval names the damaged file
    with pytest.raises(CheckpointError, match=r"step_00000006/state.pt does not match the sha256"):
        ck.resolve_checkpoint(root / "step_00000006")
    bad_weights = root / "step_00000006" / "model.safetensors"
    flip_byte(bad_weights)
    with pytest.raises(CheckpointError, match="model.safetensors does not match the sha256"):
        load_weights(bad_weights)
    out = run_cli("eval", "example", "--checkpoint", str(root / "step_00000006"), "--run-dir", str(tmp_path / "ev"))
    assert out.returncode == 2 and "does not match the sha256" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "ev" / "results.json").exists()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_what_killed_writers_left_is_tidied_before_a_resume(tmp_run):
    train(ExampleTask, tmp_run, SHORT + ["trainer.log_every=1"])
    root = tmp_run / "checkpoints"
    dead = dead_pid()
    torn = root / f".step_00000008.tmp-{dead}"                   # killed while writing step 8
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 100_000)
    # killed between the two renames of a re-save: step 6 exists only under its old name
    os.rename(root / "step_00000006", root / f".step_00000006.old-{dead}")
    alive = root / f".step_00000010.tmp-{os.getpid()}"            # a live writer's folder is left alone
    alive.mkdir()
    try:
        summary = train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8", "trainer.log_every=1"], resume=True)
    finally:
        shutil.rmtree(alive, ignore_errors=True)
    assert not torn.exists() and summary["step"] == 8
    steps = [json.loads(line)["step"] for line in (tmp_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))                             # resumed from the restored step 6
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in list_checkpoints(root)] == ["step_00000004", "step_00000006", "step_00000008"]


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
    state = rng.rng_state()
    torch.save({"rng": state}, tmp_path / "s.pt")
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    rng.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


@pytest.mark.slow
def test_cli_eval_writes_results_and_rejects_bad_checkpoint(tmp_run, tmp_path):
    train(ExampleTask, tmp_run, SHORT)
    out = run_cli("eval", "example", "--checkpoint", str(tmp_run), "--run-dir", str(tmp_path / "ev"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ev" / "results.json").is_file() and "clusters/test accuracy" in out.stdout
    out = run_cli("eval", "example", "--checkpoint", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "ev"))
    assert out.returncode == 2 and "no checkpoint at" in out.stderr
