"""Training metrics: counted FLOPs, MFU against a peak table, and the metrics.jsonl/TensorBoard log."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop, sdpa_flop

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


class MetricsLog:
    """Rank 0's log: one JSON object per line in metrics.jsonl, and TensorBoard scalars."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # records past the checkpoint belong to steps that will run again
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.write_text("")
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
