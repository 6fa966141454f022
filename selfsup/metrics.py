"""Training metrics: counted FLOPs, MFU against a peak table, the window of steps between two log records,
and the metrics.jsonl/TensorBoard log."""
from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop, sdpa_flop

from . import distributed as D
from .io import atomic_write_text

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by substring of the CUDA device name.
# The H200 here measured ~798 TFLOP/s on a bf16 matmul; MFU is against the datasheet figure, as is usual.
PEAK_BF16 = {
    "H200": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12, "H100": 989e12,
    "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12, "RTX 4090": 165e12, "V100": 125e12,
}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s of one device at the training precision, or None where we have no honest figure (CPU, MPS)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16.items():
        if key in name:
            return peak if precision in ("bf16", "fp16") else peak / 2  # tf32 is half the bf16 rate on these parts
    return None


# torch's counter knows the CUDA attention kernels but not the CPU one (SDPA without dropout, e.g. any eval-mode
# forward such as data2vec's teacher), which left attention out of CPU counts: count it with the same formulas.
@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop(query_shape, key_shape, value_shape)


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape)


def count_training_flops(step_fn) -> int:
    """FLOPs of one forward+backward, as ``torch.utils.flop_counter`` counts them (matmuls, convs, attention)."""
    with FlopCounterMode(display=False) as counter:
        step_fn()
    return counter.get_total_flops()


class MetricsWindow:
    """The steps since the last log record: it counts samples, tokens, the loss over applied steps and the
    task's metrics, decides when a record is due, and turns the window into one record (throughput, MFU)."""

    def __init__(self, env: D.Env, log_every: int, flops_per_step: float | None, peak: float | None):
        self.env, self.log_every, self.flops_per_step, self.peak = env, log_every, flops_per_step, peak
        self.loss = torch.zeros(2, dtype=torch.float64, device=env.device)   # (weighted loss sum, count)
        self.throughput: float | None = None      # samples/s of the last record
        self._reset()

    def _reset(self) -> None:
        self.loss.zero_()
        self.start, self.samples, self.tokens, self.steps, self.extra = time.perf_counter(), 0, 0, 0, {}

    def add(self, samples: int, tokens: int, metrics: dict, loss_sum: torch.Tensor | None, count: torch.Tensor):
        """One step: global samples and tokens, the task's metrics (averaged over micro-batches), and its loss
        (``loss_sum`` None for a skipped step)."""
        self.samples, self.tokens, self.steps = self.samples + samples, self.tokens + tokens, self.steps + 1
        for k, v in metrics.items():
            self.extra[k] = self.extra.get(k, 0.0) + v
        if loss_sum is not None:
            self.loss[0] += loss_sum
            self.loss[1] += count

    def due(self, step: int, last_step: int) -> bool:
        return step % self.log_every == 0 or step == last_step

    @contextmanager
    def paused(self):
        """Time spent inside (an intermediate evaluation) does not count against the window's throughput."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - start

    def record(self, step: int, lr: float, grad_norm: float, skipped_steps: int) -> dict:
        """The window as one record (a collective under DDP: every rank calls it), then a new window."""
        self.loss[0] = D.all_sum(self.loss[0].clone(), self.env)
        elapsed = time.perf_counter() - self.start
        record = {"step": step,
                  "loss": float(self.loss[0] / self.loss[1]) if self.loss[1] > 0 else float("nan"),
                  "lr": lr, "grad_norm": grad_norm,
                  "samples_per_s": self.samples / elapsed, "skipped_steps": skipped_steps,
                  **{k: float(v) / self.steps for k, v in self.extra.items()}}
        self.throughput = record["samples_per_s"]
        if self.tokens:
            record["tokens_per_s"] = self.tokens / elapsed
        if self.flops_per_step:
            achieved = self.flops_per_step * self.steps / elapsed
            record["tflops"] = achieved / 1e12
            if self.peak:
                record["mfu"] = achieved / (self.peak * self.env.world_size)
        self._reset()
        return record


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn or garbled line (a kill mid-write) is skipped with a warning
    naming the file and line, never fatal."""
    path = Path(path)
    if not path.is_file():
        return []
    records, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
            else:
                bad.append(n)
    if bad:
        lines = ", ".join(map(str, bad[:5])) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s): {lines}", stacklevel=2)
    return records


class MetricsLog:
    """Rank 0's log: one JSON object per line in metrics.jsonl, and TensorBoard scalars."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is None:
            atomic_write_text(self.path, "")
        elif self.path.exists():
            # records past the checkpoint belong to steps that will run again; rewritten atomically, so a kill
            # here leaves the old file whole
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.file = open(self.path, "a", buffering=1)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
