"""The one training loop every task runs on: one CPU, one GPU, or many through torchrun.

Read it top to bottom: set up -> (resume) -> for each step: fetch micro-batches, forward and
backward under autocast, weight by the true loss count, clip, guard against NaN/inf, step,
log, checkpoint -> evaluate.
"""
from __future__ import annotations

import copy
import itertools
import random
import signal
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainerConfig, config_hash, to_object, to_yaml
from .harness import evaluate
from .io import atomic_write_text
from .metrics import MetricsLog, count_training_flops, peak_flops
from .optim import EMA, build_optimizer, build_scheduler, default_param_groups
from .results import code_version
from .task import BatchPlan

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


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
    raise ValueError("cannot tell the batch size: the batch holds no tensor; define task.loss_count(batch)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, task, cfg: DictConfig, run_dir: str | Path, resume: bool = False):
        self.task, self.cfg, self.run_dir, self.resume = task, cfg, Path(run_dir), resume
        self.tc: TrainerConfig = to_object(cfg).trainer
        self._signal = None

    # ------------------------------------------------------------------ setup

    def _check_run_dir(self) -> Path | None:
        ckpt_root = self.run_dir / "checkpoints"
        latest = latest_checkpoint(ckpt_root)
        if self.resume and latest is None:
            raise CheckpointError(f"--resume: no checkpoint in {ckpt_root}; start the run without --resume")
        if not self.resume and latest is not None:
            raise CheckpointError(f"{self.run_dir} already holds checkpoints (latest: {latest.name}); "
                                  "pass --resume to continue that run, or choose a new --run-dir")
        return latest if self.resume else None

    def _plan(self, env: D.Env, start_step: int, model: nn.Module) -> BatchPlan:
        tc = self.tc
        per_rank, rem = divmod(tc.batch_size, env.world_size * tc.grad_accum)
        if rem or per_rank == 0:
            raise ValueError(f"trainer.batch_size={tc.batch_size} must be a positive multiple of "
                             f"world size ({env.world_size}) x trainer.grad_accum ({tc.grad_accum})")
        return BatchPlan(micro_batch_size=per_rank, grad_accum=tc.grad_accum, rank=env.rank,
                         world_size=env.world_size, seed=tc.seed, start_step=start_step,
                         num_workers=tc.num_workers, pin_memory=env.device.type == "cuda", model=model)

    def _on_signal(self, signum, frame):
        self._signal = signum

    # ------------------------------------------------------------------ the run

    def fit(self) -> dict:
        tc, task = self.tc, self.task
        env = D.setup(tc.device)
        code_version()                           # pin the version of the code that runs now
        precision = D.resolve_precision(tc.precision, env.device)
        if tc.fsdp and tc.ema_decay > 0:
            raise ValueError("trainer.ema_decay is not supported with trainer.fsdp=true yet; turn one of them off")
        resume_from = self._check_run_dir()
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))

        seed_everything(tc.seed)                 # same initial weights on every rank
        raw = task.build_model().to(env.device)
        raw.train()
        if resume_from is not None:
            raw.load_state_dict(load_weights(resume_from / "model.safetensors", expected=raw.state_dict()))
        seed_everything(tc.seed + env.rank)      # per-rank randomness (masks, dropout) from here on

        saved = load_state(resume_from) if resume_from is not None else None
        start_step = 0 if saved is None else int(saved["step"])
        if saved is not None:
            self._restore_task(saved.get("task"), env)     # before train_batches: its first batch may depend on it
        plan = self._plan(env, start_step, raw)
        batches = iter(task.train_batches(plan))
        first = next(batches)
        batches = itertools.chain([first], batches)
        flops_micro = self._flops(raw, first, env, precision)

        model = self._wrap(raw, env)
        groups = (task.param_groups(raw, tc.weight_decay) if hasattr(task, "param_groups")
                  else default_param_groups(raw, tc.weight_decay))
        opt = build_optimizer(groups, tc.lr, (tc.beta1, tc.beta2), tc.eps, fused=env.device.type == "cuda")
        sched = build_scheduler(opt, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
        scaler = torch.amp.GradScaler(env.device.type, enabled=precision == "fp16")
        ema = EMA(raw, tc.ema_decay) if tc.ema_decay > 0 else None
        if resume_from is not None:
            self._restore(resume_from, saved, model, opt, sched, scaler, ema, env)

        log = MetricsLog(self.run_dir, tc.tensorboard, start_step if resume_from else None) if env.is_main else None
        peak = peak_flops(env.device, precision)
        end_step = min(tc.stop_at or tc.max_steps, tc.max_steps)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        bar = tqdm(total=tc.max_steps, initial=start_step, disable=not (env.is_main and tc.progress),
                   desc=f"train {task.name}", mininterval=1.0, dynamic_ncols=True)
        step, consecutive_bad, skipped, last_saved = start_step, 0, 0, None
        window_start, window_samples, window_tokens, window_steps = time.perf_counter(), 0, 0, 0
        loss_acc = torch.zeros(2, dtype=torch.float64, device=env.device)   # (weighted loss sum, count) over window
        extra_acc: dict = {}
        throughput, stopped_by = None, None
        try:
            while step < end_step:
                micro = [next(batches) for _ in range(tc.grad_accum)]
                # counted on the host-side batches, before they move: no device sync in the hot loop
                counts = [float(task.loss_count(b)) if hasattr(task, "loss_count") else float(batch_size_of(b))
                          for b in micro]
                window_samples += sum(batch_size_of(b) for b in micro) * env.world_size
                if hasattr(task, "num_tokens"):
                    window_tokens += sum(int(task.num_tokens(b)) for b in micro) * env.world_size
                total = D.all_sum(torch.tensor(sum(counts), dtype=torch.float64, device=env.device), env)
                step_loss = torch.zeros((), dtype=torch.float64, device=env.device)
                for i, b in enumerate(micro):
                    b = to_device(b, env.device)
                    sync = model.no_sync() if env.distributed and not tc.fsdp and i < len(micro) - 1 else nullcontext()
                    with sync:
                        with D.autocast(env.device, precision):
                            loss, metrics = task.loss(model, b)
                        # DDP averages gradients over ranks; weighting by count*world/total makes the sum a
                        # mean over every unit in the global batch, as one big batch would give.
                        weight = counts[i] * env.world_size / total
                        scaler.scale(loss * weight.to(loss.dtype)).backward()
                    step_loss += loss.detach().double() * counts[i]
                    for k, v in metrics.items():
                        v = v.detach().float() if torch.is_tensor(v) else float(v)   # no host sync until logged
                        extra_acc[k] = extra_acc.get(k, 0.0) + v / len(micro)
                scaler.unscale_(opt)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(),
                                                           tc.grad_clip if tc.grad_clip > 0 else float("inf"))
                bad_local = (not bool(torch.isfinite(step_loss))
                             or (precision != "fp16" and not bool(torch.isfinite(grad_norm))))
                bad, stop = self._agree(bad_local, self._signal is not None, env)
                if bad:
                    opt.zero_grad(set_to_none=True)
                    scaler.update()
                    with warnings.catch_warnings():   # the schedule moves on over a skipped step, on purpose
                        warnings.simplefilter("ignore", UserWarning)
                        sched.step()
                    consecutive_bad, skipped = consecutive_bad + 1, skipped + 1
                    if consecutive_bad >= tc.max_nonfinite:
                        latest = latest_checkpoint(self.run_dir / "checkpoints")
                        raise NonFiniteError(
                            f"{consecutive_bad} consecutive steps had a non-finite loss or gradient (last at step "
                            f"{step + 1}); stopping. Last good checkpoint: {latest or 'none saved yet'}. "
                            "Lower trainer.lr, raise trainer.warmup_steps or check the data; "
                            "trainer.max_nonfinite sets the limit.")
                else:
                    consecutive_bad = 0
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    if ema is not None:
                        ema.update(raw)
                    sched.step()
                    loss_acc[0] += step_loss
                    loss_acc[1] += total
                step += 1
                window_steps += 1
                bar.update(1)

                if step % tc.log_every == 0 or step == end_step:
                    loss_acc[0] = D.all_sum(loss_acc[0].clone(), env)
                    elapsed = time.perf_counter() - window_start
                    record = {"step": step,
                              "loss": float(loss_acc[0] / loss_acc[1]) if loss_acc[1] > 0 else float("nan"),
                              "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                              "samples_per_s": window_samples / elapsed, "skipped_steps": skipped,
                              **{k: float(v) / window_steps for k, v in extra_acc.items()}}
                    throughput = record["samples_per_s"]
                    if window_tokens:
                        record["tokens_per_s"] = window_tokens / elapsed
                    if flops_micro:
                        achieved = flops_micro * tc.grad_accum * env.world_size * window_steps / elapsed
                        record["tflops"] = achieved / 1e12
                        if peak:
                            record["mfu"] = achieved / (peak * env.world_size)
                    if log is not None:
                        log.log(record)
                        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                    loss_acc.zero_()
                    extra_acc.clear()
                    window_start, window_samples, window_tokens, window_steps = time.perf_counter(), 0, 0, 0

                if stop or step == end_step or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
                    last_saved = self._save(step, model, raw, opt, sched, scaler, ema, env, throughput)
                if tc.eval_every and step % tc.eval_every == 0 and step != tc.max_steps:
                    self._evaluate(raw, ema, env, step, throughput)
                if stop:
                    stopped_by = signal.Signals(self._signal).name if self._signal else "signal on another rank"
                    break
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
            if log is not None:
                log.close()

        results = []
        if stopped_by is None and step == tc.max_steps and tc.eval_at_end:
            results = self._evaluate(raw, ema, env, step, throughput)
        if env.is_main and stopped_by:
            print(f"[selfsup] {stopped_by} received: saved {last_saved} at step {step}. "
                  f"Continue with the same command and --resume.", flush=True)
        return {"step": step, "stopped_by": stopped_by, "skipped_steps": skipped, "checkpoint": str(last_saved),
                "results": results, "model": raw}

    # ------------------------------------------------------------------ pieces

    def _evaluate(self, raw: nn.Module, ema, env: D.Env, step: int, throughput) -> list:
        """Rank 0 evaluates (EMA weights when on); sharded weights are first gathered by every rank."""
        full = get_model_state_dict(raw, options=FULL) if self.tc.fsdp and env.distributed else None
        results = []
        if env.is_main:
            eval_model = raw
            if full is not None:            # sharded: a plain model from the gathered weights
                eval_model = self.task.build_model().to(env.device)
                eval_model.load_state_dict(full)
            elif ema is not None:           # a copy, not a rebuild: no task-side loading per evaluation
                eval_model = copy.deepcopy(raw)
                eval_model.load_state_dict(ema.state_dict(raw))
            devices = [env.device] if env.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):   # evaluating must not shift the training run's RNG
                results = evaluate(self.task, eval_model, self.cfg, self.run_dir, env.device,
                                   world_size=env.world_size, step=step, throughput=throughput)
        D.barrier(env)
        return results

    def _agree(self, bad: bool, stop: bool, env: D.Env) -> tuple[bool, bool]:
        """One collective per step: every rank skips (and stops) together."""
        if not env.distributed:
            return bad, stop
        flags = torch.tensor([float(bad), float(stop)], device=env.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad_all, stop_all = flags.tolist()
        return bool(bad_all), bool(stop_all)

    def _flops(self, raw: nn.Module, batch, env: D.Env, precision: str) -> float | None:
        """Training FLOPs of one micro-batch: the task's own count, else counted once on a copy of the model."""
        if hasattr(self.task, "flops_per_batch"):
            return float(self.task.flops_per_batch(batch))
        if not self.tc.count_flops:
            return None
        probe = copy.deepcopy(raw)
        devices = [env.device] if env.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            b = to_device(batch, env.device)

            def fwd_bwd():
                with D.autocast(env.device, precision):
                    loss, _ = self.task.loss(probe, b)
                loss.backward()
            flops = count_training_flops(fwd_bwd)
        return float(flops) or None

    def _wrap(self, raw: nn.Module, env: D.Env) -> nn.Module:
        model = raw
        if env.distributed and self.tc.fsdp:
            from torch.distributed.fsdp import fully_shard
            for child in raw.modules():
                if getattr(child, "fsdp_unit", False):  # models mark their blocks as shard units
                    fully_shard(child)
            fully_shard(raw)
        elif env.distributed:
            model = nn.parallel.DistributedDataParallel(
                raw, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        if self.tc.compile:
            model.compile()
        return model

    def _save(self, step, model, raw, opt, sched, scaler, ema, env, throughput) -> Path | None:
        model_state = get_model_state_dict(raw, options=FULL)
        optim_state = get_optimizer_state_dict(raw, opt, options=FULL)
        rng = D.gather_objects(rng_state(), env)
        task_state = D.gather_objects(self.task.state_dict(), env) if hasattr(self.task, "state_dict") else None
        path = None
        if env.is_main:
            state = {"step": step, "optimizer": optim_state, "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "rng": rng, "world_size": env.world_size}
            if task_state is not None:
                state["task"] = task_state            # one entry per rank
            meta = {"task": self.task.name, "config_hash": config_hash(self.cfg), "code_version": code_version(),
                    "world_size": env.world_size, "throughput": throughput}
            path = save_checkpoint(self.run_dir / "checkpoints", step, model_state, state, meta,
                                   ema_state=ema.state_dict(raw) if ema is not None else None,
                                   keep_last=self.tc.keep_last)
        D.barrier(env)
        return path if path is not None else self.run_dir / "checkpoints" / f"step_{step:08d}"

    def _restore(self, ckpt: Path, state: dict, model, opt, sched, scaler, ema, env: D.Env) -> None:
        try:
            set_optimizer_state_dict(model if not isinstance(model, nn.parallel.DistributedDataParallel)
                                     else model.module,
                                     opt, state["optimizer"], options=FULL)
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt / 'state.pt'} does not fit this run's optimizer "
                                  f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        if ema is not None:
            ema_path = ckpt / "ema.safetensors"
            ema.load(load_weights(ema_path, expected=ema.shadow) if ema_path.exists() else ema.shadow)
        rngs = state["rng"]
        if len(rngs) != env.world_size:
            print(f"[selfsup] resuming {len(rngs)}-rank checkpoint on {env.world_size} ranks: "
                  "the data order is kept, per-rank random streams are reseeded", flush=True)
        else:
            set_rng_state(rngs[env.rank])

    def _restore_task(self, states: list | None, env: D.Env) -> None:
        if states is None or not hasattr(self.task, "load_state_dict"):
            return
        if len(states) != env.world_size:
            print(f"[selfsup] resuming {len(states)}-rank task state on {env.world_size} ranks: "
                  "each rank takes rank (r mod saved ranks)'s state", flush=True)
        self.task.load_state_dict(states[env.rank % len(states)])
