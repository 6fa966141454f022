"""The one training loop every task runs on: one CPU, one GPU, or many through torchrun.

`fit` is a short loop over named components:

    TrainState      where the run is: step, counters, training time, RNGs    selfsup/train_state.py
    Checkpointer    what is saved, when, keep-last-k, which one to resume    selfsup/checkpointer.py
    MetricsWindow   throughput and MFU accounting, when to log               selfsup/metrics.py
    train_step      one optimizer step over grad_accum micro-batches         below
    StopSignals     SIGTERM/SIGINT -> checkpoint -> clean exit               below

Setup checks everything (the config, the run folder, the checkpoint against the model and optimizer) before
the first file is written: a refused run changes nothing on disk.
"""
from __future__ import annotations

import copy
import itertools
import signal
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoint import latest_checkpoint
from .checkpointer import FULL, Checkpointer
from .config import TrainerConfig, check_trainer, config_hash, to_object, to_yaml
from .errors import ConfigError, NonFiniteError, UserError
from .harness import evaluate
from .io import atomic_write_text
from .metrics import MetricsLog, MetricsWindow, count_training_flops, peak_flops
from .optim import EMA, build_optimizer, build_scheduler, default_param_groups
from .results import code_version
from .rng import seed_everything
from .runs import check_run_dir, prepare_run_dir, write_status
from .task import BatchPlan
from .train_state import TrainState

__all__ = ["NonFiniteError", "Trainer", "seed_everything"]


def to_device(batch, device: torch.device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch) -> int:
    if torch.is_tensor(batch):
        return batch.shape[0]
    values = batch.values() if isinstance(batch, dict) else batch
    for v in values:
        return batch_size_of(v)
    raise TypeError("cannot tell the batch size: the batch holds no tensor; define task.loss_count(batch)")


@dataclass
class Training:
    """The model and what updates it: what a checkpoint holds besides the train state."""
    raw: nn.Module                 # the model itself (sharded in place under FSDP)
    model: nn.Module               # what the loss calls: raw, or DDP(raw); compiled when asked
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: EMA | None

    def update(self, skip: bool) -> None:
        """Apply the accumulated gradient, or drop it (a non-finite step); the schedule moves on either way."""
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            with warnings.catch_warnings():   # stepping the schedule over a skipped optimizer step, on purpose
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.raw)
        self.scheduler.step()


@dataclass
class StepOutput:
    loss_sum: torch.Tensor         # this rank's sum of loss x count over its micro-batches
    count: torch.Tensor            # loss units (samples, tokens) in the global batch
    grad_norm: torch.Tensor
    metrics: dict                  # the task's metrics, averaged over micro-batches (tensors: no host sync)
    samples: int                   # in the global batch
    tokens: int
    skipped: bool                  # the loss or gradient was not finite on some rank: no update
    stop: bool                     # a stop signal arrived on some rank


class StopSignals:
    """SIGTERM/SIGINT during training are remembered, not fatal: the step ends, every rank agrees to stop,
    a checkpoint is saved and `selfsup train` exits 75."""
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> "StopSignals":
        self.received = None
        self._previous = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        self.received = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "signal on another rank"


class Trainer:
    def __init__(self, task, cfg: DictConfig, run_dir: str | Path, resume: bool = False):
        self.task, self.cfg, self.run_dir, self.resume = task, cfg, Path(run_dir), resume
        self.tc: TrainerConfig = to_object(cfg).trainer
        check_trainer(self.tc)
        self._bad_in_a_row = 0

    # ------------------------------------------------------------------ the run

    def fit(self) -> dict:
        tc, task = self.tc, self.task
        self.env = env = D.setup(tc.device)
        self.precision = D.resolve_precision(tc.precision, env.device)
        check_run_dir(self.run_dir, self.resume)
        D.barrier(env)                           # every rank has looked before rank 0 writes anything
        self.checkpointer = Checkpointer(self.run_dir, tc, env, {"task": task.name, "config_hash": config_hash(
            self.cfg), "code_version": code_version()})      # pins the version of the code that runs now
        ckpt, saved = self._resume_point()
        state = TrainState.from_saved(saved)
        training, batches, flops = self._build(ckpt, saved, state)   # checked against the checkpoint
        log = self._accept(ckpt, state)                               # the first write
        window = MetricsWindow(env, tc.log_every, flops and flops * tc.grad_accum * env.world_size,
                               peak_flops(env.device, self.precision))
        last_step = min(tc.stop_at or tc.max_steps, tc.max_steps)
        bar = tqdm(total=tc.max_steps, initial=state.step, disable=not (env.is_main and tc.progress),
                   desc=f"train {task.name}", mininterval=1.0, dynamic_ncols=True)
        stopped_by, saved_at, results = None, None, []
        try:
            with StopSignals() as signals:
                state.start_clock()
                while state.step < last_step:
                    micro = [next(batches) for _ in range(tc.grad_accum)]
                    out = self.train_step(training, micro, stop_requested=signals.received is not None)
                    state.step += 1
                    self._guard(out, state)
                    window.add(out.samples, out.tokens, out.metrics, None if out.skipped else out.loss_sum, out.count)
                    bar.update(1)
                    if window.due(state.step, last_step):
                        self._log(log, bar, window.record(state.step, training.scheduler.get_last_lr()[0],
                                                          float(out.grad_norm), state.skipped_steps))
                    if self.checkpointer.due(state.step, last_step, out.stop):
                        saved_at = self.checkpointer.save(training, state, task, window.throughput)
                    if tc.eval_every and state.step % tc.eval_every == 0 and state.step != tc.max_steps:
                        with window.paused():       # off the throughput window, as off the training clock
                            results = self._evaluate(training, state, window.throughput)
                    if out.stop:
                        stopped_by = signals.name
                        break
                state.stop_clock()
            if stopped_by is None and state.step == tc.max_steps and tc.eval_at_end:
                results = self._evaluate(training, state, window.throughput)
        except BaseException as e:
            self._status("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", state,
                         error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        return self._finish(training, state, stopped_by, saved_at, results)

    def train_step(self, training: Training, micro: list, stop_requested: bool = False) -> StepOutput:
        """One optimizer step over ``grad_accum`` micro-batches:

        1. count each micro-batch's loss units on the host (no device sync) and sum them over ranks;
        2. forward and backward each under autocast, weighted by its share of the global count, so the summed
           gradient is the mean over every unit of the global batch, as one big batch would give (DDP averages
           over ranks, hence the world-size factor; it syncs gradients on the last micro-batch only);
        3. unscale and clip the gradient;
        4. one collective: is the loss or gradient non-finite on any rank, did a stop signal arrive on any;
        5. apply the update, or skip it on every rank alike."""
        env, task, tc = self.env, self.task, self.tc
        counts = [float(task.loss_count(b)) if hasattr(task, "loss_count") else float(batch_size_of(b))
                  for b in micro]
        total = D.all_sum(torch.tensor(sum(counts), dtype=torch.float64, device=env.device), env)
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        metrics: dict = {}
        for i, batch in enumerate(micro):
            batch = to_device(batch, env.device)
            defer_sync = env.distributed and not tc.fsdp and i < len(micro) - 1
            with training.model.no_sync() if defer_sync else nullcontext():
                with D.autocast(env.device, self.precision):
                    loss, step_metrics = task.loss(training.model, batch)
                weight = counts[i] * env.world_size / total
                training.scaler.scale(loss * weight.to(loss.dtype)).backward()
            loss_sum += loss.detach().double() * counts[i]
            for k, v in step_metrics.items():
                v = v.detach().float() if torch.is_tensor(v) else float(v)
                metrics[k] = metrics.get(k, 0.0) + v / len(micro)
        training.scaler.unscale_(training.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(training.raw.parameters(),
                                                   tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        nonfinite = (not bool(torch.isfinite(loss_sum))
                     or (self.precision != "fp16" and not bool(torch.isfinite(grad_norm))))
        skip, stop = D.any_rank(env, nonfinite, stop_requested)
        training.update(skip)
        samples = sum(batch_size_of(b) for b in micro) * env.world_size
        tokens = sum(int(task.num_tokens(b)) for b in micro) * env.world_size if hasattr(task, "num_tokens") else 0
        return StepOutput(loss_sum, total, grad_norm, metrics, samples, tokens, skip, stop)

    # ------------------------------------------------------------------ setup: nothing is written here

    def _resume_point(self) -> tuple[Path, dict] | tuple[None, None]:
        """The newest intact checkpoint (when resuming), after rank 0 tidied what killed writers left: their
        temporary folders go, a complete folder caught between the two renames of a re-save comes back."""
        if not self.resume:
            return None, None
        if self.env.is_main:
            for done in self.checkpointer.tidy():
                print(f"[selfsup] {self.run_dir / 'checkpoints'}: {done} (left by a writer that was killed)",
                      flush=True)
        D.barrier(self.env)
        return self.checkpointer.find()

    def _build(self, ckpt: Path | None, saved: dict | None, state: TrainState):
        """Model, data and optimizer, restored from the checkpoint (when resuming) and checked against it."""
        tc, task, env = self.tc, self.task, self.env
        if state.step > tc.max_steps:
            raise ConfigError(f"trainer.max_steps={tc.max_steps} is below the step of the checkpoint to resume "
                              f"({ckpt}: step {state.step}); set trainer.max_steps >= {state.step}")
        seed_everything(tc.seed)                 # same initial weights on every rank
        raw = task.build_model().to(env.device)
        raw.train()
        if ckpt is not None:
            self.checkpointer.load_model(ckpt, raw)
        seed_everything(tc.seed + env.rank)      # per-rank randomness (masks, dropout) from here on
        TrainState.restore_task(saved, env, task)
        batches = iter(task.train_batches(self._plan(state.step, raw)))
        first = next(batches, None)
        if first is None:
            raise UserError(f"task '{task.name}' yielded no training batches: its data is empty")
        flops = self._flops(raw, first)
        model = self._wrap(raw)
        groups = (task.param_groups(raw, tc.weight_decay) if hasattr(task, "param_groups")
                  else default_param_groups(raw, tc.weight_decay))
        opt = build_optimizer(groups, tc.lr, (tc.beta1, tc.beta2), tc.eps, fused=env.device.type == "cuda")
        training = Training(raw, model, opt, build_scheduler(opt, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio),
                            torch.amp.GradScaler(env.device.type, enabled=self.precision == "fp16"),
                            EMA(raw, tc.ema_decay) if tc.ema_decay > 0 else None)
        if ckpt is not None:
            self.checkpointer.load_training(ckpt, saved, training)
        TrainState.restore_rng(saved, env)
        return training, itertools.chain([first], batches), flops

    def _plan(self, start_step: int, model: nn.Module) -> BatchPlan:
        tc, env = self.tc, self.env
        per_rank, rem = divmod(tc.batch_size, env.world_size * tc.grad_accum)
        if rem or per_rank == 0:
            raise ConfigError(f"trainer.batch_size={tc.batch_size} must be a positive multiple of "
                              f"world size ({env.world_size}) x trainer.grad_accum ({tc.grad_accum})")
        return BatchPlan(micro_batch_size=per_rank, grad_accum=tc.grad_accum, rank=env.rank,
                         world_size=env.world_size, seed=tc.seed, start_step=start_step, num_workers=tc.num_workers,
                         pin_memory=env.device.type == "cuda", device=env.device, model=model)

    def _flops(self, raw: nn.Module, batch) -> float | None:
        """Training FLOPs of one micro-batch: the task's own count, else counted once on a copy of the model."""
        if hasattr(self.task, "flops_per_batch"):
            return float(self.task.flops_per_batch(batch))
        if not self.tc.count_flops:
            return None
        probe = copy.deepcopy(raw)
        env = self.env
        with torch.random.fork_rng(devices=[env.device] if env.device.type == "cuda" else []):
            b = to_device(batch, env.device)

            def fwd_bwd():
                with D.autocast(env.device, self.precision):
                    loss, _ = self.task.loss(probe, b)
                loss.backward()
            flops = count_training_flops(fwd_bwd)
        return float(flops) or None

    def _wrap(self, raw: nn.Module) -> nn.Module:
        """DDP, or FSDP2 on the units the model declares (``shard_units()``, see selfsup.task) and then the root."""
        env, model = self.env, raw
        if env.distributed and self.tc.fsdp:
            from torch.distributed.fsdp import fully_shard
            for unit in raw.shard_units() if hasattr(raw, "shard_units") else []:
                fully_shard(unit)
            fully_shard(raw)
        elif env.distributed:
            model = nn.parallel.DistributedDataParallel(
                raw, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        if self.tc.compile:
            model.compile()
        return model

    # ------------------------------------------------------------------ the run folder

    def _accept(self, ckpt: Path | None, state: TrainState) -> MetricsLog | None:
        """The run is accepted: rank 0 proves checkpoints/ writable, writes config.yaml and status.json, and cuts
        metrics.jsonl back to the checkpoint."""
        if self.resume:
            where = f"{ckpt} (step {state.step})" if ckpt is not None else \
                "step 0 with the saved config (the run saved no checkpoint)"
            print(f"[selfsup] resuming {self.run_dir} from {where}", flush=True)
        if not self.env.is_main:
            return None
        prepare_run_dir(self.run_dir)
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
        self._status("running", state)
        return MetricsLog(self.run_dir, self.tc.tensorboard, state.step if self.resume else None)

    def _status(self, name: str, state: TrainState, **info) -> None:
        if not self.env.is_main:
            return
        try:
            write_status(self.run_dir, name, step=state.step, max_steps=self.tc.max_steps,
                         train_seconds=round(state.read_clock(), 3), **info)
        except OSError as e:     # never hide the error that brought us here
            warnings.warn(f"cannot write {self.run_dir / 'status.json'}: {e}", stacklevel=2)

    # ------------------------------------------------------------------ pieces of the loop

    def _guard(self, out: StepOutput, state: TrainState) -> None:
        """Count skipped steps; too many in a row stop the run (its last good checkpoint stays as it was)."""
        if not out.skipped:
            self._bad_in_a_row = 0
            return
        state.skipped_steps += 1
        self._bad_in_a_row += 1
        if self._bad_in_a_row >= self.tc.max_nonfinite:
            latest = latest_checkpoint(self.run_dir / "checkpoints")
            raise NonFiniteError(
                f"{self._bad_in_a_row} consecutive steps had a non-finite loss or gradient (last at step "
                f"{state.step}); stopping. Last good checkpoint: {latest or 'none saved yet'}. "
                "Lower trainer.lr, raise trainer.warmup_steps or check the data; "
                "trainer.max_nonfinite sets the limit.")

    @staticmethod
    def _log(log: MetricsLog | None, bar, record: dict) -> None:
        if log is not None:
            log.log(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)

    def _evaluate(self, training: Training, state: TrainState, throughput) -> list:
        """Rank 0 evaluates (EMA weights when on), off the training clock; sharded weights are first gathered
        by every rank."""
        env = self.env
        with state.clock_paused():
            full = get_model_state_dict(training.raw, options=FULL) if self.tc.fsdp and env.distributed else None
            results = []
            if env.is_main:
                model = training.raw
                if full is not None:            # sharded: a plain model from the gathered weights
                    model = self.task.build_model().to(env.device)
                    model.load_state_dict(full)
                elif training.ema is not None:  # a copy, not a rebuild: no task-side loading per evaluation
                    model = copy.deepcopy(training.raw)
                    model.load_state_dict(training.ema.state_dict(training.raw))
                with torch.random.fork_rng(devices=[env.device] if env.device.type == "cuda" else []):
                    results = evaluate(self.task, model, self.cfg, self.run_dir, env.device,
                                       world_size=env.world_size, step=state.step, throughput=throughput,
                                       train_seconds=state.train_seconds)   # must not shift the training RNG
            D.barrier(env)
        return results

    def _finish(self, training: Training, state: TrainState, stopped_by, saved_at, results) -> dict:
        if stopped_by is not None:
            self._status("interrupted", state, reason=stopped_by, checkpoint=str(saved_at))
            if self.env.is_main:
                print(f"[selfsup] {stopped_by} received: saved {saved_at} at step {state.step}. "
                      f"Continue with the same command and --resume.", flush=True)
        elif state.step < self.tc.max_steps:
            self._status("interrupted", state, reason="trainer.stop_at", checkpoint=str(saved_at))
        else:
            self._status("complete", state, results=len(results))
        return {"step": state.step, "stopped_by": stopped_by, "skipped_steps": state.skipped_steps,
                "checkpoint": str(saved_at), "results": results, "model": training.raw,
                "train_seconds": state.train_seconds}
