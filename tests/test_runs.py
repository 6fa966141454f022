"""Run folders: a run is never overwritten, a refused run changes nothing on disk, run_state tells finished
from resumable, and readers survive a damaged results.json or metrics.jsonl."""
import json
import math
import os
import shutil

import pytest

from selfsup.errors import CheckpointError, ConfigError, NonFiniteError, RunDirError
from selfsup.example import ExampleTask
from selfsup.metrics import read_metrics
from selfsup.results import Result, read_results, write_results
from selfsup.runs import run_state, write_status

from conftest import run_cli, train

SHORT = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.batch_size=16", "trainer.log_every=1"]


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_run_that_saved_no_checkpoint_is_not_overwritten(tmp_run, tmp_path):
    train(ExampleTask, tmp_run, ["trainer.max_steps=0"])               # the random-weights baseline: results only
    assert run_state(tmp_run) == "complete" and not any((tmp_run / "checkpoints").iterdir())
    before = snapshot(tmp_run)
    with pytest.raises(RunDirError, match=r"already holds a run \(config.yaml, status.json, results.json"):
        train(ExampleTask, tmp_run, ["trainer.max_steps=0", "task.hidden=8"])
    assert snapshot(tmp_run) == before
    evaluated = tmp_path / "eval"                                      # an eval folder: results.json alone
    evaluated.mkdir()
    (evaluated / "results.json").write_text("[]")
    with pytest.raises(RunDirError, match="results.json"):
        train(ExampleTask, evaluated, ["trainer.max_steps=2"])


def test_a_refused_resume_writes_nothing(tmp_run):
    train(ExampleTask, tmp_run, SHORT)
    before = snapshot(tmp_run)
    with pytest.raises(CheckpointError, match="does not match the model"):
        train(ExampleTask, tmp_run, SHORT + ["task.hidden=32"], resume=True)
    with pytest.raises(ConfigError, match=r"trainer.max_steps=4 is below the step of the checkpoint .* step 6"):
        train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=4"], resume=True)
    assert snapshot(tmp_run) == before
    assert train(ExampleTask, tmp_run, SHORT + ["trainer.max_steps=8"], resume=True)["step"] == 8


def test_run_folder_that_is_a_file_or_cannot_hold_checkpoints(tmp_path):
    a_file = tmp_path / "run"
    a_file.write_text("not a folder")
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        train(ExampleTask, a_file, SHORT)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "checkpoints").write_text("in the way")                 # checkpoints/ cannot be created
    with pytest.raises(RunDirError, match="cannot write in .*checkpoints"):
        train(ExampleTask, blocked, SHORT)
    assert sorted(p.name for p in blocked.iterdir()) == ["checkpoints"]   # found before step 1: nothing trained


def test_run_state_through_a_runs_life(tmp_run, tmp_path):
    assert run_state(tmp_run) == "new"
    train(ExampleTask, tmp_run, SHORT + ["trainer.stop_at=2"])
    assert run_state(tmp_run) == "interrupted"
    status = json.loads((tmp_run / "status.json").read_text())
    write_status(tmp_run, "running", pid=status["pid"] + 10**7)       # its writer died (kill -9): resumable
    assert run_state(tmp_run) == "interrupted"
    write_status(tmp_run, "running", pid=os.getppid())                # a live writer: refused
    assert run_state(tmp_run) == "running"
    with pytest.raises(RunDirError, match="is being trained right now by process"):
        train(ExampleTask, tmp_run, SHORT, resume=True)
    write_status(tmp_run, "interrupted")
    train(ExampleTask, tmp_run, SHORT, resume=True)
    assert run_state(tmp_run) == "complete"
    (tmp_run / "results.json").unlink()                              # its evaluation lost: resume evaluates again
    assert run_state(tmp_run) == "interrupted"
    (tmp_run / "status.json").unlink()                               # a run from before status.json
    assert run_state(tmp_run) == "interrupted"

    failing = tmp_path / "nan"
    with pytest.raises(NonFiniteError):
        train(ExampleTask, failing, SHORT + ["trainer.lr=1e30", "trainer.max_nonfinite=1", "trainer.grad_clip=0"])
    assert run_state(failing) == "failed"
    assert "NonFiniteError" in json.loads((failing / "status.json").read_text())["error"]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_run):
    train(ExampleTask, tmp_run, SHORT)
    shutil.rmtree(tmp_run / "checkpoints")                            # as if killed before its first save
    (tmp_run / "results.json").unlink()
    (tmp_run / "status.json").unlink()
    assert run_state(tmp_run) == "interrupted"
    with pytest.raises(RunDirError, match="pass --resume"):
        train(ExampleTask, tmp_run, SHORT)
    assert train(ExampleTask, tmp_run, SHORT, resume=True)["step"] == 6
    assert run_state(tmp_run) == "complete"


@pytest.mark.slow
def test_cli_exit_status_and_one_line_errors(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "file").write_text("x")
    out = run_cli("train", "example", "--run-dir", str(tmp_path / "file"))
    assert out.returncode == 2 and "is a file, not a folder" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("train", "example", "--run-dir", str(run), "--set", "trainer.max_steps=2", "trainer.progress=false")
    assert out.returncode == 0 and run_state(run) == "complete"


def test_readers_skip_a_bad_record_with_a_warning_naming_the_file(tmp_path):
    good = Result("t", "d", "test", "acc", 0.5, 0, "h", "v", "cpu", 1.0, step=3)
    path = tmp_path / "results.json"
    rows = [vars(good), {**vars(good), "metric": "nan", "value": float("nan")},
            {**vars(good), "metric": "str", "value": "high"}, ["not", "a", "record"]]
    path.write_text(json.dumps(rows))
    with pytest.warns(UserWarning) as caught:
        assert read_results(path) == [good]
    assert [str(w.message) for w in caught] == [f"{path}: skipping record 1 (value nan is not a finite number)",
                                               f"{path}: skipping record 2 (value 'high' is not a finite number)",
                                               f"{path}: skipping record 3 (a list, not an object)"]
    with pytest.warns(UserWarning):
        write_results(path, [Result("t", "d", "test", "f1", 0.25, 0, "h", "v", "cpu", 1.0)])
    kept = json.loads(path.read_text())
    assert len(kept) == 5 and math.isnan(kept[1]["value"]) and kept[2]["value"] == "high"   # nothing dropped

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\nnot json\n{"step": 3, "loss": 1.5}\n')
    with pytest.warns(UserWarning, match=f"{metrics}: skipped 2 unreadable line.*: 2, 3"):
        assert [r["step"] for r in read_metrics(metrics)] == [1, 3]
