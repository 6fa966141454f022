"""The loop itself: exact resume, NaN/inf guard, accumulation weighting, EMA, results."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfsup.checkpoint import latest_checkpoint, load_weights
from selfsup.example import ExampleTask
from selfsup.trainer import NonFiniteError

from conftest import make_cfg, train

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


def test_run_files_are_world_readable_whatever_the_umask(tmp_path):
    """Run files (config, metrics, status, results, every checkpoint file, exports) are 0644 like any checkpoint a
    lab shares, even under a private umask; folders follow the umask."""
    import os

    from selfsup.config import to_object
    old = os.umask(0o077)
    try:
        train(ExampleTask, tmp_path / "run", ["trainer.max_steps=2", "trainer.checkpoint_every=1",
                                             "trainer.tensorboard=false"])
        task = ExampleTask(to_object(make_cfg(ExampleTask, [])).task)
        task.export(task.build_model(), tmp_path / "export")
    finally:
        os.umask(old)
    files = [f for f in [*(tmp_path / "run").rglob("*"), *(tmp_path / "export").rglob("*")] if f.is_file()]
    names = {f.name for f in files}
    assert {"config.yaml", "metrics.jsonl", "status.json", "results.json", "model.safetensors", "state.pt",
            "meta.json", "config.json"} <= names
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files if f.stat().st_mode & 0o777 != 0o644} == {}


def test_resume_skips_a_torn_log_line_and_cuts_the_log_atomically(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(ExampleTask, run, RESUME_SETUP + ["trainer.stop_at=6"])
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')                                # torn by a kill in the middle of a write
    before = (run / "metrics.jsonl").read_bytes()
    real_write_text = Path.write_text

    def killed_while_cutting_the_log(self, text, *args, **kwargs):
        if "metrics.jsonl" in self.name:
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError("killed")
        return real_write_text(self, text, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", killed_while_cutting_the_log)
    with pytest.warns(UserWarning, match=f"{run / 'metrics.jsonl'}: skipped 1 unreadable line"):
        with pytest.raises(OSError, match="killed"):
            train(ExampleTask, run, RESUME_SETUP, resume=True)
    assert (run / "metrics.jsonl").read_bytes() == before           # the old log, whole
    monkeypatch.undo()
    with pytest.warns(UserWarning, match=f"{run / 'metrics.jsonl'}: skipped 1 unreadable line"):
        train(ExampleTask, run, RESUME_SETUP, resume=True)
    assert sorted(losses(run)) == list(range(1, 13))


class Timed(ExampleTask):
    """A fake clock: each training loss costs one second, each evaluation a thousand."""
    name = "example"
    clock = 0.0

    def loss(self, model, batch):
        Timed.clock += 1.0
        return super().loss(model, batch)

    def evaluate(self, model, out_dir):
        Timed.clock += 1000.0
        return super().evaluate(model, out_dir)


def test_train_seconds_add_up_over_resumes_and_leave_out_evaluation(tmp_path, monkeypatch):
    from selfsup.config import to_object
    from selfsup.train_state import TrainState

    from conftest import make_cfg
    monkeypatch.setattr(TrainState, "now", staticmethod(lambda: Timed.clock))
    setup = ["trainer.max_steps=6", "trainer.eval_every=2", "trainer.checkpoint_every=3"]
    timed = lambda: Timed(to_object(make_cfg(ExampleTask)).task)   # noqa: E731
    train(ExampleTask, tmp_path / "split", setup + ["trainer.stop_at=3"], task=timed())
    summary = train(ExampleTask, tmp_path / "split", setup, resume=True, task=timed())
    assert summary["train_seconds"] == 6.0                         # 3 + 3 steps of one second; evaluations excluded
    records = json.loads((tmp_path / "split" / "results.json").read_text())
    assert {r["step"]: r["train_seconds"] for r in records} == {2: 2.0, 4: 4.0, 6: 6.0}
    meta = json.loads((latest_checkpoint(tmp_path / "split" / "checkpoints") / "meta.json").read_text())
    assert meta["train_seconds"] == 6.0


class RandomInit(ExampleTask):
    """Draws weights from the global RNG in __init__, as a random-encoder baseline does."""
    name = "example"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.init = torch.randn(4)


def test_tasks_are_built_after_seeding():
    from selfsup.task import build_task

    from conftest import make_cfg
    cfg = make_cfg(RandomInit, ["trainer.seed=3"])
    torch.manual_seed(123)
    a = build_task(RandomInit, cfg)
    torch.rand(100)                                                # whatever ran before in this process
    b = build_task(RandomInit, cfg)
    c = build_task(RandomInit, make_cfg(RandomInit, ["trainer.seed=4"]))
    assert torch.equal(a.init, b.init) and not torch.equal(a.init, c.init)


def test_batch_plan_gives_seeded_generators_and_a_context_to_act_in():
    from selfsup.task import BatchPlan
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train()
    plan = BatchPlan(micro_batch_size=2, grad_accum=1, rank=1, world_size=2, seed=7, start_step=0, model=model)
    other_rank = BatchPlan(micro_batch_size=2, grad_accum=1, rank=0, world_size=2, seed=7, start_step=0)
    draw = lambda p, *keys: torch.rand(3, generator=p.generator(*keys))   # noqa: E731
    assert torch.equal(draw(plan, 5, 1), draw(plan, 5, 1))
    assert not torch.equal(draw(plan, 5, 1), draw(plan, 5, 2)) and not torch.equal(draw(plan, 5), draw(other_rank, 5))
    x = torch.ones(4, 2)
    with plan.acting() as policy:
        assert not policy.training and not torch.is_grad_enabled()
        assert torch.equal(policy(x), policy(x))                   # dropout does not act on collected data
    assert model.training and torch.is_grad_enabled()


@pytest.mark.slow
def test_a_run_is_bit_reproducible_across_processes(tmp_path):
    """caption-random drew its random ViT in CaptionTask.__init__ before anything seeded the process, so two
    processes differed from the first logged loss on."""
    import subprocess
    import sys

    from conftest import ROOT
    args = ["task.data.num_train=32", "task.data.num_eval=4", "task.vocab_size=60", "task.text_model.hidden_size=16",
            "task.text_model.num_heads=2", "task.text_model.num_layers=1", "task.text_model.intermediate_size=32",
            "trainer.max_steps=2", "trainer.batch_size=8", "trainer.log_every=1", "trainer.eval_at_end=false",
            "trainer.count_flops=false", "trainer.progress=false", "trainer.tensorboard=false"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "SELFSUP_CACHE": str(tmp_path / "cache")}
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "selfsup", "train", "caption", "--run-dir", str(r),
                               "--set", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in runs]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    a, b = (losses(r) for r in runs)
    assert len(a) == 2 and a == b                                  # exact, not close
    wa, wb = final_weights(runs[0]), final_weights(runs[1])
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
