"""The command line: repeated --set flags, exports that never damage a run, exit status 2 for a user error
(one line, no traceback) and a traceback for a bug."""
import json

import pytest

from selfsup.checkpoint import latest_checkpoint, load_weights
from selfsup.cli import main
from selfsup.example import ExampleTask

from conftest import train

SHORT = ["trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.batch_size=16", "trainer.progress=false",
         "trainer.tensorboard=false"]


def test_repeated_set_flags_are_merged_in_order(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "example", "--preset", "tiny", "--run-dir", str(run), "--set", "trainer.max_steps=3",
                 "trainer.log_every=5", "--set", "trainer.log_every=1", "--set", "trainer.progress=false",
                 "trainer.tensorboard=false"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]                 # max_steps from the first flag, log_every=1 from the second


def test_export_never_writes_into_a_runs_checkpoints_nor_over_a_folder(tmp_path, capsys):
    run = tmp_path / "run"
    train(ExampleTask, run, SHORT)
    ckpt = latest_checkpoint(run / "checkpoints")
    before = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    for out in (ckpt, run / "checkpoints", run / "checkpoints" / "new"):
        for force in ([], ["--force"]):
            assert main(["export", "example", "--checkpoint", str(run), "--out", str(out), *force]) == 2
            assert "inside the run's checkpoints" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == before
    assert train(ExampleTask, run, SHORT[1:] + ["trainer.max_steps=6"], resume=True)["step"] == 6   # still resumable

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", "example", "--checkpoint", str(run), "--out", str(mine)]) == 2
    assert "not empty" in capsys.readouterr().err and not (mine / "model.safetensors").exists()
    assert main(["export", "example", "--checkpoint", str(run), "--out", str(mine), "--force"]) == 0
    assert (mine / "notes.txt").read_text() == "keep me" and load_weights(mine / "model.safetensors")
    fresh = tmp_path / "exports" / "example"
    assert main(["export", "example", "--checkpoint", str(run), "--out", str(fresh)]) == 0
    assert sorted(p.name for p in fresh.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in fresh.parent.iterdir()] == ["example"]      # no temporary folder left beside it


def test_user_errors_exit_2_and_bugs_show_their_traceback(tmp_path, capsys, monkeypatch):
    run = str(tmp_path / "run")
    assert main(["train", "example", "--run-dir", run, "--set", "trainer.grad_accum=0"]) == 2
    assert capsys.readouterr().err.strip() == \
        "selfsup: error: trainer.grad_accum=0 is out of range: it must be >= 1"

    def bug(self):
        raise KeyError("a bug in our code")
    monkeypatch.setattr("selfsup.trainer.Trainer.fit", bug)
    with pytest.raises(KeyError, match="a bug in our code"):       # not turned into "error: ..." and exit 2
        main(["train", "example", "--run-dir", run])
