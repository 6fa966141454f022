"""Leaderboard end to end on the smoke suite (seconds per run): each pretraining made once and read by two
columns, the same command twice gives the same tables, failed / interrupted arms reported and their dependents
skipped, SIGTERM checkpoints and exits 75, and the submitit launcher (its local executor) runs the same DAG."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.board import collect
from benchmarks.leaderboard import main
from benchmarks.matrix import Budget, Representation, Suite, Train
from benchmarks.plan import plan
from benchmarks.runner import exit_status, run_local, run_submitit
from benchmarks.suites import smoke

from conftest import ROOT

pytestmark = pytest.mark.slow
QUIET = ["trainer.progress=false", "trainer.tensorboard=false"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")       # the runs are tiny: one thread each is fastest


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`selfsup leaderboard run --suite smoke` once: two representations, two columns, one seed."""
    out = tmp_path_factory.mktemp("lb") / "smoke"
    os.environ["OMP_NUM_THREADS"] = "1"
    assert main(["run", "--suite", "smoke", "--out", str(out), "--set", *QUIET]) == 0
    return out


def _copy(smoke_run, tmp_path):
    out = tmp_path / "smoke"
    shutil.copytree(smoke_run, out)
    for f in out.rglob("*"):        # the copy's commands and folders name the copy
        if f.is_file() and f.suffix in (".json", ".yaml", ".md"):
            f.write_text(f.read_text().replace(str(smoke_run), str(out)))
    return out


def _row(table: str, name: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {name} |"))


def test_each_pretraining_runs_once_and_feeds_every_column(smoke_run):
    journal = json.loads((smoke_run / "jobs.json").read_text())
    assert sorted(journal) == ["random-clusters-s0", "shifted--random-s0", "shifted--trained-s0", "trained-clusters-s0"]
    assert all(r["state"] == "complete" and r["action"] == "ran" for r in journal.values())
    # the shifted evaluation read the pretraining's own checkpoint, and the accuracy column its own results
    shifted = json.loads((smoke_run / "shifted--trained-s0" / "results.json").read_text())[0]["value"]
    own = json.loads((smoke_run / "trained-clusters-s0" / "results.json").read_text())[0]["value"]
    table = (smoke_run / "leaderboard.md").read_text()
    row = _row(table, "MLP trained")
    assert f"{own:.3f} (n=1)" in row and f"{shifted:.3f} (n=1)" in row and "**" not in row   # n=1: no bold
    assert "[^trained-clusters-s0]" in row and "[^shifted--trained-s0]" in row
    assert "1.00 (n=1, 2 col.)" in row and "2.00 (n=1, 2 col.)" in _row(table, "MLP random")
    assert "[^shifted--trained-s0]: `selfsup eval example --checkpoint" in table
    assert (smoke_run / "leaderboard.html").is_file() and (smoke_run / "leaderboard-headline.png").is_file()


def test_rerun_skips_everything_and_renders_the_same(smoke_run, tmp_path, capsys):
    out = _copy(smoke_run, tmp_path)
    before = (out / "leaderboard.md").read_text()
    mtime = (out / "trained-clusters-s0" / "results.json").stat().st_mtime
    assert main(["run", "--suite", "smoke", "--out", str(out), "--set", *QUIET]) == 0
    assert capsys.readouterr().out.count("complete, skipped") == 4
    assert (out / "trained-clusters-s0" / "results.json").stat().st_mtime == mtime
    assert (out / "leaderboard.md").read_text() == before


def test_same_command_twice_gives_identical_tables(smoke_run, tmp_path):
    """A second process tree, from scratch: every number and the whole Markdown page are bit-identical."""
    out = tmp_path / "again"
    assert main(["run", "--suite", "smoke", "--out", str(out), "--set", *QUIET]) == 0
    first = (smoke_run / "leaderboard.md").read_text().replace(str(smoke_run), "OUT")
    assert (out / "leaderboard.md").read_text().replace(str(out), "OUT") == first


def test_failed_arm_is_reported_its_dependents_skipped_and_the_rest_finish(smoke_run, tmp_path):
    out = _copy(smoke_run, tmp_path)
    base = smoke()
    broken = Representation("broken", "vector", {"clusters": Train("example", "tiny", ("task.no_such_key=1",),
                                                                   Budget(steps=5))}, label="MLP broken")
    p = plan(Suite("smoke", base.representations + (broken,), base.evaluations), out, extra=tuple(QUIET))
    outcomes = run_local(p, log=lambda *_: None)
    assert outcomes["broken-clusters-s0"].state == "failed" and outcomes["broken-clusters-s0"].returncode == 2
    assert "no_such_key" in outcomes["broken-clusters-s0"].error
    assert outcomes["shifted--broken-s0"].state == "skipped"
    assert "broken-clusters-s0 (failed)" in outcomes["shifted--broken-s0"].error
    assert outcomes["trained-clusters-s0"].action == "skipped"       # the other arms: done, kept
    assert exit_status(outcomes) == 1
    from benchmarks.markdown import summary_md
    table = summary_md(collect(p))
    assert "| MLP broken | 5 steps (clusters) [^broken-clusters-s0] | failed [^broken-clusters-s0] | skipped" in table
    assert "`broken-clusters-s0`: failed — " in table and "no_such_key" in table
    assert f"; {len(p.cells[('broken', 'shifted')])} seed per cell." in table.splitlines()[0]     # what was planned


def test_interrupted_arm_is_reported_then_resumed(smoke_run, tmp_path):
    out = _copy(smoke_run, tmp_path)
    value = json.loads((out / "trained-clusters-s0" / "results.json").read_text())[0]["value"]
    (out / "trained-clusters-s0" / "results.json").unlink()        # stopped after its checkpoint, before results
    (out / "trained-clusters-s0" / "status.json").unlink(missing_ok=True)
    p = plan(smoke(), out, extra=tuple(QUIET))
    board = collect(p)
    assert board.states["trained-clusters-s0"] == "interrupted"
    assert board.cells[("trained", "accuracy")].missing == {"trained-clusters-s0": "interrupted"}
    outcomes = run_local(p, log=lambda *_: None)
    assert outcomes["trained-clusters-s0"].action == "resumed" and outcomes["trained-clusters-s0"].state == "complete"
    assert collect(p).cells[("trained", "accuracy")].values == [value]


def test_sigterm_checkpoints_the_running_arm_and_exits_75(tmp_path):
    out = tmp_path / "lb"
    cmd = [sys.executable, "-m", "selfsup", "leaderboard", "run", "--suite", "smoke", "--out", str(out), "--set",
           *QUIET, "trainer.max_steps=100000", "trainer.log_every=5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = out / "trained-clusters-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)             # to the leaderboard only: it passes the signal on
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 75, output
    assert any((out / "trained-clusters-s0" / "checkpoints").glob("step_*"))        # nothing lost
    journal = json.loads((out / "jobs.json").read_text())
    assert journal["trained-clusters-s0"]["state"] == "interrupted" and "random-clusters-s0" not in journal
    table = (out / "leaderboard.md").read_text()
    assert "interrupted" in _row(table, "MLP trained") and "not run" in _row(table, "MLP random")


def test_submitit_local_executor_runs_the_dag(smoke_run, tmp_path):
    base = smoke()
    suite = Suite("smoke", base.representations[:1], base.evaluations)    # one pretraining -> two columns
    p = plan(suite, tmp_path / "sub", extra=tuple(QUIET))
    outcomes = run_submitit(p, cluster="local", poll=0.2, log=lambda *_: None)
    assert {k: o.state for k, o in outcomes.items()} == {"trained-clusters-s0": "complete",
                                                         "shifted--trained-s0": "complete"}
    assert (tmp_path / "sub" / "submitit").is_dir()
    # the downstream job started after its pretraining finished
    started = (tmp_path / "sub" / "shifted--trained-s0" / "results.json").stat().st_mtime
    assert started > (tmp_path / "sub" / "trained-clusters-s0" / "results.json").stat().st_mtime
    # and measured what the local launcher measured
    local = collect(plan(smoke(), smoke_run))
    board = collect(p)
    for col in ("accuracy", "shifted"):
        assert board.cells[("trained", col)].values == local.cells[("trained", col)].values
