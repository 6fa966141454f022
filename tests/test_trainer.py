"""The loop itself: exact resume, NaN/inf guard, accumulation weighting, EMA, results."""
import json

import pytest
import torch
import torch.nn.functional as F

from selfsup.checkpoint import latest_checkpoint, load_weights
from selfsup.example import ExampleTask
from selfsup.trainer import NonFiniteError

from conftest import train

# dropout + jitter + accumulation: every RNG and the data position must be restored for equality
RESUME_SETUP = ["task.dropout=0.2", "task.jitter=0.3", "trainer.max_steps=12", "trainer.batch_size=32",
                "trainer.grad_accum=2", "trainer.log_every=1", "trainer.lr=0.01", "trainer.warmup_steps=3",
                "trainer.weight_decay=0.05", "trainer.ema_decay=0.9", "trainer.num_workers=0"]


def losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def final_weights(run_dir, name="model.safetensors"):
    return load_weights(latest_checkpoint(run_dir / "checkpoints") / name)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_the_same_run(tmp_path, workers):
    setup = RESUME_SETUP + [f"trainer.num_workers={workers}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(ExampleTask, straight, setup)
    first = train(ExampleTask, split, setup + ["trainer.stop_at=6"])
    assert first["step"] == 6 and not first["results"]          # stopped early: no evaluation yet
    second = train(ExampleTask, split, setup, resume=True)
    assert second["step"] == 12

    a, b = losses(straight), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert a == b                                                 # exact, step by step
    for name in ("model.safetensors", "ema.safetensors"):
        wa, wb = final_weights(straight, name), final_weights(split, name)
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)


def test_resume_truncates_log_past_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(ExampleTask, run, RESUME_SETUP + ["trainer.stop_at=6"])
    with open(run / "metrics.jsonl", "a") as f:                    # records of steps lost in a crash
        f.write(json.dumps({"step": 7, "loss": 123.0}) + "\n")
    train(ExampleTask, run, RESUME_SETUP, resume=True)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13)) and 123.0 not in losses(run).values()


class FlakyTask(ExampleTask):
    """Returns a NaN loss on chosen steps (counted in loss calls, one per step here)."""
    name = "flaky"

    def __init__(self, cfg, bad_calls):
        super().__init__(cfg)
        self.calls, self.bad_calls = 0, set(bad_calls)

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        self.calls += 1
        return (loss * float("nan") if self.calls in self.bad_calls else loss), metrics


def test_nonfinite_step_is_skipped_and_counted(tmp_path):
    from selfsup.config import to_object

    from conftest import make_cfg
    cfg = to_object(make_cfg(ExampleTask)).task
    summary = train(ExampleTask, tmp_path / "run", ["trainer.max_steps=6", "trainer.log_every=1"],
                    task=FlakyTask(cfg, bad_calls={2, 4}))    # call 1 is the FLOP count on a copy
    assert summary["skipped_steps"] == 2 and summary["step"] == 6
    w = summary["model"].state_dict()
    assert all(torch.isfinite(v).all() for v in w.values())
    assert losses(tmp_path / "run")[6] == losses(tmp_path / "run")[6]   # not NaN


def test_too_many_nonfinite_steps_stop_with_last_checkpoint_intact(tmp_path):
    from selfsup.config import to_object

    from conftest import make_cfg
    cfg = to_object(make_cfg(ExampleTask)).task
    run = tmp_path / "run"
    task = FlakyTask(cfg, bad_calls=set(range(6, 100)))
    with pytest.raises(NonFiniteError, match="3 consecutive.*step_00000004"):
        train(ExampleTask, run, ["trainer.max_steps=20", "trainer.checkpoint_every=4", "trainer.max_nonfinite=3"],
              task=task)
    ckpt = latest_checkpoint(run / "checkpoints")
    assert ckpt.name == "step_00000004"
    assert all(torch.isfinite(v).all() for v in load_weights(ckpt / "model.safetensors").values())


class MaskedTask(ExampleTask):
    """Loss is a mean over a variable number of 'valid' points per batch, like masked tokens in MLM."""
    name = "masked"

    def valid(self, batch):
        x, _ = batch
        return x[:, 0] > 0

    def loss(self, model, batch):
        x, y = batch
        per = F.cross_entropy(model(x), y, reduction="none")
        m = self.valid(batch)
        return (per * m).sum() / m.sum().clamp(min=1), {}

    def loss_count(self, batch):
        return int(self.valid(batch).sum())


def test_accumulation_weights_by_loss_count_like_one_big_batch(tmp_path):
    common = ["trainer.max_steps=5", "trainer.batch_size=64", "trainer.lr=0.05", "trainer.grad_clip=0",
              "task.jitter=0", "trainer.eval_at_end=false"]
    one = train(MaskedTask, tmp_path / "one", common)["model"].state_dict()
    acc = train(MaskedTask, tmp_path / "acc", common + ["trainer.grad_accum=4"])["model"].state_dict()
    for k in one:
        torch.testing.assert_close(acc[k], one[k], rtol=1e-5, atol=1e-6)


def test_periodic_evaluation_keeps_each_step_and_the_run_unchanged(tmp_path):
    base = ["trainer.max_steps=6", "trainer.log_every=1", "task.dropout=0.3"]
    train(ExampleTask, tmp_path / "a", base + ["trainer.eval_every=2"])
    train(ExampleTask, tmp_path / "b", base)
    steps = sorted(r["step"] for r in json.loads((tmp_path / "a" / "results.json").read_text()))
    assert steps == [2, 4, 6]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")             # evaluation consumed no training randomness


def test_train_writes_run_directory_and_results(tmp_path):
    run = tmp_path / "run"
    summary = train(ExampleTask, run, ["trainer.max_steps=150", "trainer.batch_size=64", "trainer.lr=0.003",
                                       "trainer.log_every=50", "task.spread=3.0"])
    assert (run / "config.yaml").read_text().count("max_steps: 150") == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [50, 100, 150]
    assert records[-1]["loss"] < records[0]["loss"] and records[-1]["samples_per_s"] > 0
    results = json.loads((run / "results.json").read_text())
    assert results[0]["metric"] == "accuracy" and results[0]["value"] > 0.5   # 4 classes: chance is 0.25
    assert results[0]["step"] == 150 and results[0]["seed"] == 0 and len(results[0]["config_hash"]) == 12
    assert summary["results"][0].value == results[0]["value"]
