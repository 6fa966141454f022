"""The speed levers of issue 20, each measured against our unchanged step in the same process:

    python -m benchmarks.gpu_levers --suite mae --device cuda --size base --batch 256 \\
        --levers patch-matmul sdpa-flash sdpa-efficient sdpa-cudnn
    python -m benchmarks.gpu_levers --suite mae --device cuda --size base --batch 256 --compile --levers patch-matmul
    python -m benchmarks.gpu_levers --suite bert --device cuda --size base --batch 256 --compile --levers no-dropout
    python -m benchmarks.gpu_levers --suite mae --device cpu --size tiny --batch 8 --levers patch-matmul sdpa-math

Each lever is applied to a copy of our model (same weights) or around its loss call; the contenders are timed
interleaved by `benchmarks.throughput.measure`, so the ratio against the unchanged step is what the lever buys.
A lever that should not change the function is first checked to give the unchanged model's loss (eval mode, the
step's precision, the same random numbers); one that changes the recipe (no-dropout) says so. A lever the device
cannot run (an SDPA backend that refuses a shape) is reported, not hidden.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.distributed import autocast, pick_device, resolve_precision
from selfsup.results import stamp

from .throughput import SUITES, Contender, Suite, measure, publish


class MatmulPatchEmbed(nn.Module):
    """timm's PatchEmbed (a Conv2d whose kernel and stride are the patch) as one reshape and one matmul, with the
    same weights: (B, C, H, W) -> (B, L, D)."""

    def __init__(self, pe: nn.Module):
        super().__init__()
        self.p = pe.proj.kernel_size[0]
        self.proj, self.norm = pe.proj, pe.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p, w = self.p, self.proj.weight                                               # w: (D, C, p, p)
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
        return self.norm(F.linear(x, w.reshape(w.shape[0], -1), self.proj.bias))      # (B, L, D)


def patch_matmul(model: nn.Module) -> nn.Module:
    encoder = model.encoder
    encoder.patch_embed = MatmulPatchEmbed(encoder.patch_embed)
    return model


def no_dropout(model: nn.Module) -> nn.Module:
    """Dropout off everywhere (the Cramming recipe pretrains without it): the modules, and attention's probability
    where a module keeps it as a number."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        for name in ("dropout_prob", "attention_dropout"):
            if isinstance(getattr(m, name, None), float):
                setattr(m, name, 0.0)
    return model


def sdpa(backend: str) -> Callable:
    def wrap(loss_fn):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        chosen = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                  "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[backend]

        def loss(m, b):
            with sdpa_kernel([chosen]):
                return loss_fn(m, b)
        return loss
    return wrap


@dataclass
class Lever:
    what: str
    same_function: bool                                    # False: the lever changes the recipe, not only the speed
    suites: tuple[str, ...] = ("mae", "bert")
    apply: Callable[[nn.Module], nn.Module] = lambda m: m
    wrap: Callable[[Callable], Callable] = lambda f: f


LEVERS = {
    "patch-matmul": Lever("patch embedding as reshape + one matmul instead of a convolution", True, ("mae",),
                          patch_matmul),
    "sdpa-flash": Lever("attention forced to the flash SDPA kernel", True, wrap=sdpa("flash")),
    "sdpa-efficient": Lever("attention forced to the memory-efficient SDPA kernel", True, wrap=sdpa("efficient")),
    "sdpa-cudnn": Lever("attention forced to cuDNN's SDPA kernel", True, wrap=sdpa("cudnn")),
    "sdpa-math": Lever("attention forced to the unfused (math) SDPA path", True, wrap=sdpa("math")),
    "no-dropout": Lever("no dropout (changes the recipe: Cramming's)", False, ("bert",), no_dropout),
}


# how far a lever that keeps the function may move the loss: rounding of the step's precision
SAME_LOSS = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 1e-2}


def loss_difference(base: Contender, other: Contender, batch, device: torch.device, precision: str) -> float:
    """Relative difference of the two losses on one batch, eval mode, at the step's precision (flash and cuDNN
    attention exist only in half precision), from the same random numbers; TF32 off, so that fp32 means fp32."""
    values = []
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False), _no_tf32_matmul():
        for c in (base, other):
            model = c.model.to(device).eval()
            with torch.no_grad(), autocast(device, precision), \
                    torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(0)
                values.append(float(c.loss(model, batch)))
    return abs(values[1] - values[0]) / max(abs(values[0]), 1e-12)


@contextlib.contextmanager
def _no_tf32_matmul():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def check_levers(suite_name: str, levers: list[str]) -> None:
    """ValueError naming the first lever that does not apply to this suite."""
    for name in levers:
        if suite_name not in LEVERS[name].suites:
            raise ValueError(f"--levers {name} applies to --suite {' or '.join(LEVERS[name].suites)}, "
                             f"not {suite_name}")


def run(suite_name: str, size: str, batch: int, device: torch.device, precision: str, compile: bool,
        levers: list[str], steps: int, repeats: int) -> tuple[list[dict], dict[str, str]]:
    check_levers(suite_name, levers)                  # before any model is built
    suite = SUITES[suite_name](size, batch, device)
    ours = suite.contenders[0]
    contenders, notes = [Contender(f"{ours.name} (unchanged)", ours.model, ours.loss)], {}
    for name in levers:
        lever = LEVERS[name]
        c = Contender(f"{name}: {lever.what}", lever.apply(copy.deepcopy(ours.model)), lever.wrap(ours.loss))
        if lever.same_function:
            try:
                diff = loss_difference(contenders[0], c, suite.batch, device, precision)
            except RuntimeError as e:                      # e.g. an SDPA backend that refuses this shape or device
                notes[name] = f"cannot run here: {str(e).strip().splitlines()[0][:160]}"
                continue
            if diff > SAME_LOSS[precision]:
                notes[name] = f"computes another function (loss differs by {diff:.1e}): not timed"
                continue
            notes[name] = f"same loss (relative difference {diff:.1e} at {precision})"
        else:
            notes[name] = "changes the recipe: its loss is not compared"
        contenders.append(c)
    rows = measure(Suite(suite.unit, suite.batch, batch, suite.tokens_per_sample, contenders), device, precision,
                   compile, steps, repeats)
    return rows, notes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_levers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["mae", "bert"], default="mae")
    p.add_argument("--levers", nargs="+", choices=sorted(LEVERS), required=True)
    p.add_argument("--size", choices=["tiny", "base"], default="tiny")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    args = p.parse_args(argv)
    try:
        check_levers(args.suite, args.levers)
    except ValueError as e:        # a user's error: usage and exit 2, before any model is built
        p.error(str(e))
    device = pick_device(args.device, 0)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    rows, notes = run(args.suite, args.size, args.batch, device, precision, args.compile, args.levers, args.steps,
                      args.repeats)
    base = rows[0]["samples_per_s"]
    unit = "img" if args.suite == "mae" else "seq"
    flag = " --compile" if args.compile else ""
    lines = [f"### Levers on our {args.suite} step — {args.size}, batch {args.batch}, {precision}"
             f"{', compiled' if args.compile else ''}", "",
             stamp(device), "",
             f"Command: `python -m benchmarks.gpu_levers --suite {args.suite} --device {args.device} --size "
             f"{args.size} --batch {args.batch} --steps {args.steps} --repeats {args.repeats}{flag} --levers "
             f"{' '.join(args.levers)}`", "",
             f"| contender | {unit}/s | step (ms) | this ÷ unchanged |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['samples_per_s']:,.1f} | {1000 * r['step_s']:.1f} ± "
                     f"{100 * r['spread']:.0f}% | {r['samples_per_s'] / base:.3f}× |")
    lines += ["", *[f"- {name}: {note}" for name, note in notes.items()]]
    publish(lines, args.write, f"levers-{args.suite}-{args.size}-{device.type}-{precision}"
                               f"{'-compiled' if args.compile else ''}")


if __name__ == "__main__":
    main()
