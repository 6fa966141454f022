"""The GPU run's correctness checks judge loss curves: a missing step, a drifting resume or a failed run must
fail the check (the runs themselves are real `selfsup train` processes; here they are replaced by curves)."""
import json
import math

import pytest

from benchmarks import gpu_checks
from selfsup.results import code_version


def write_curve(run_dir, curve: dict[int, float]):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in curve.items()))


def test_compare_uses_only_steps_both_logged_after_the_start():
    a = {1: 1.0, 2: 2.0, 3: 3.0}
    b = {1: 1.0, 2: 1.0, 4: 9.0}
    mean, worst, n = gpu_checks.compare(a, b)
    assert n == 2 and mean == pytest.approx(0.5) and worst == pytest.approx(1.0)
    assert gpu_checks.compare(a, b, from_step=1)[2] == 1
    assert math.isnan(gpu_checks.compare(a, {}, 0)[0])


def fake_runs(monkeypatch, drift: float = 0.0, fail: str | None = None, ignore_stop_at: bool = False,
              drop_step: int | None = None):
    """Replace each `selfsup train` process by a curve: every arm the same, the resumed half shifted by ``drift``;
    a stopped run leaves the status `trainer.stop_at` leaves, and a resume says where it resumed."""
    def train_run(task, run_dir, device, steps, precision, compile, extra, resume=False):
        if fail and run_dir.name == fail:
            return 1, "Traceback ...\nRuntimeError: boom"
        stop = next((int(x.split("=")[1]) for x in extra if x.startswith("trainer.stop_at=")), steps)
        stop = steps if ignore_stop_at else stop
        old = gpu_checks.losses(run_dir)
        curve = {s: 5.0 / s + (drift if resume else 0.0) for s in range(1, stop + 1)
                 if s not in old and s != drop_step}
        write_curve(run_dir, {**old, **curve})
        state = "interrupted" if stop < steps else "complete"
        (run_dir / "status.json").write_text(json.dumps({"state": state, "step": stop}))
        return 0, f"[selfsup] resuming {run_dir} from ckpt (step {max(old)})" if resume and old else ""
    monkeypatch.setattr(gpu_checks, "train_run", train_run)


def test_train_checks_pass_when_every_curve_agrees(monkeypatch, tmp_path):
    fake_runs(monkeypatch)
    lines, ok = gpu_checks.train_checks("cpu", 10, 2, tmp_path)
    assert ok, "\n".join(lines)
    assert sum("| ok |" in line for line in lines) == 6


def test_a_resume_that_drifts_fails(monkeypatch, tmp_path):
    fake_runs(monkeypatch, drift=0.1)
    lines, ok = gpu_checks.train_checks("cpu", 10, 2, tmp_path)
    assert not ok
    assert [line.split("|")[2].strip() for line in lines if "FAILED" in line] == ["resumed vs uninterrupted (bf16)"] * 2


def test_a_failed_run_fails_and_says_why(monkeypatch, tmp_path):
    fake_runs(monkeypatch, fail="bert-bf16")
    lines, ok = gpu_checks.train_checks("cpu", 10, 2, tmp_path)
    assert not ok
    assert any("bert bf16 failed: exit 1: RuntimeError: boom" in line for line in lines)


def test_a_run_that_ignores_stop_at_fails(monkeypatch, tmp_path):
    fake_runs(monkeypatch, ignore_stop_at=True)
    lines, ok = gpu_checks.train_checks("cpu", 10, 2, tmp_path)
    assert not ok
    assert any("stop_at=5 left state 'complete' at step 10" in line for line in lines)


def test_a_missing_step_fails(monkeypatch, tmp_path):
    fake_runs(monkeypatch, drop_step=3)
    lines, ok = gpu_checks.train_checks("cpu", 10, 2, tmp_path)
    assert not ok
    assert any("| bf16 vs fp32 | 9 of 10 |" in line and "FAILED" in line for line in lines)


def test_code_version_names_the_tree_a_copy_was_made_from(monkeypatch):
    code_version.cache_clear()
    monkeypatch.setenv("SELFSUP_CODE_VERSION", "345f58b854fe")
    try:
        assert code_version() == "345f58b854fe"
    finally:
        code_version.cache_clear()
