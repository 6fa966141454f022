"""Many processes: DDP parity with one process, and SIGTERM -> checkpoint -> resume (subprocesses)."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from selfsup.checkpoint import latest_checkpoint, load_weights
from selfsup.runs import run_state

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
COMMON = ["trainer.max_steps=8", "trainer.batch_size=32", "trainer.lr=0.01", "trainer.log_every=1",
          "trainer.progress=false", "trainer.tensorboard=false", "trainer.weight_decay=0.1", "task.jitter=0.2"]


def weights(run):
    return load_weights(latest_checkpoint(run / "checkpoints") / "model.safetensors")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    run = tmp_path_factory.mktemp("single") / "run"
    out = run_cli("train", "example", "--run-dir", str(run), "--set", *COMMON)
    assert out.returncode == 0, out.stderr
    return run


@pytest.mark.parametrize("extra", [[], ["trainer.grad_accum=2"], ["trainer.fsdp=true", "trainer.grad_accum=2"]],
                         ids=["ddp", "ddp-accum", "fsdp-accum"])
def test_two_ranks_equal_one_process(single, tmp_path, extra):
    run = tmp_path / "ddp"
    out = run_cli("train", "example", "--run-dir", str(run), "--set", *COMMON, *extra, torchrun=2)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = weights(single), weights(run)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    la = [json.loads(x)["loss"] for x in (single / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == 8
    torch.testing.assert_close(torch.tensor(lb), torch.tensor(la), rtol=1e-5, atol=1e-6)


def _sigterm_midrun(run, torchrun):
    """Start a long run, SIGTERM it once it logged a few steps; return (returncode, stdout+stderr)."""
    args = ["train", "example", "--run-dir", str(run), "--set", *COMMON, "trainer.max_steps=1000000",
            "task.num_train=100000"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
                if torchrun else [sys.executable])
    proc = subprocess.Popen([*launcher, "-m", "selfsup", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


@pytest.mark.parametrize("ranks", [0, 2])
def test_sigterm_saves_and_resume_finishes(tmp_path, ranks):
    run = tmp_path / "run"
    code, out = _sigterm_midrun(run, ranks)
    # exit 75 (stopped, resumable); torchrun forwards SIGTERM to the ranks, waits for them, then exits 1 itself
    # (its own choice): the ranks' clean stop shows in the message, status and checkpoint below
    assert code == (1 if ranks else 75), out[-3000:]
    assert "SIGTERM received" in out and "--resume" in out
    assert run_state(run) == "interrupted" and json.loads((run / "status.json").read_text())["reason"] == "SIGTERM"
    ckpt = latest_checkpoint(run / "checkpoints")
    stopped = json.loads((ckpt / "meta.json").read_text())["step"]
    assert stopped >= 5
    assert all(torch.isfinite(v).all() for v in weights(run).values())   # loadable, complete
    res = run_cli("train", "example", "--run-dir", str(run), "--resume", "--set", f"trainer.stop_at={stopped + 3}",
                  torchrun=ranks)
    assert res.returncode == 0, res.stderr[-3000:]
    assert latest_checkpoint(run / "checkpoints").name == f"step_{stopped + 3:08d}"
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, stopped + 4))
    assert run_state(run) == "interrupted"          # stop_at: resumable, not complete
