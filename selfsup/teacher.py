"""data2vec 2.0's teacher–student machinery (Baevski et al., 2022), written once for every modality.

A student encodes a masked input; an EMA copy of it (the teacher) encodes the unmasked input, and the
student learns to regress the teacher's *contextualised* features at the masked positions. Pieces:

    teacher = EMATeacher(student_encoder, cfg)           # frozen deep copy, updated by EMA (schedule below)
    teacher.maybe_update(student_encoder, accumulate)    # first thing in each training forward
    y = teacher.targets(block_outputs, inputs)           # (B, T, D): mean of the top-K blocks, each instance-normed
    y = clone_batch(y, cfg.clone_batch)                  # one copy per mask: M masks share one teacher pass
    loss = regression_loss(pred, y[mask], cfg.loss_scale).mean()

``block_outputs(module, *inputs) -> list[(B, T, D)]`` is the encoder-specific part: it runs the teacher's
copy and returns one tensor per block (a ViT, a BERT encoder, anything with blocks). fairseq takes the
FFN output before the block's last residual (``end_of_block_targets=False``); whatever the function returns
is averaged here.

Where the defaults come from: fairseq ``examples/data2vec/models/data2vec2.py`` and its configs
``config/v2/base_images_only_task.yaml`` (image) and ``base_text_only_task.yaml`` (text); the field comments
give both. The teacher's forward runs inside the task's ``loss``, so the trainer's FLOP counter (one counted
forward+backward of ``loss``) includes it and MFU stays true; its memory is one more copy of the encoder's
weights (fp32) and its activations without gradients.

The EMA update is done lazily: at the first micro-batch of optimizer step n (n >= 1) the teacher moves
towards the student with decay(n), which is exactly fairseq's update after step n (``set_num_updates``),
since the teacher is only read in the forward. A step the trainer skips (non-finite loss) still counts.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


@dataclass
class TeacherConfig:
    ema_decay: float = 0.9998          # teacher decay at step 0 (image 0.9998, text 0.9999)
    ema_end_decay: float = 0.99999     # decay reached at ema_anneal_end_step (image and text 0.99999)
    ema_anneal_end_step: int = 100_000  # linear anneal from ema_decay to ema_end_decay (image and text 100k)
    top_k: int = 10                    # average_top_k_layers: top blocks averaged into the target
                                       # (image 10 of 12, text 12 of 12)
    instance_norm_layers: bool = True  # instance_norm_target_layer: normalise each block's output over the
                                       # sequence, per channel, before averaging (image and text: true)
    final_norm: str = "layer"          # none | layer | instance: normalisation of the average
                                       # (image: layer_norm_targets=true -> layer; text: none)
    clone_batch: int = 16              # M masks per sample, one teacher pass for all of them (image 16, text 8)
    loss_scale: float = 0.0            # per-element MSE scale; 0 means 1/sqrt(D) (image: None -> 1/sqrt(D); text 1.0)
    centre_positions: bool = False     # not in the paper: subtract each position's mean target over the batch, so
                                       # that no part of a target is known from its position alone (an ablation of
                                       # the position shortcut, benchmarks/data2vec_text_ablations.sh)


def ema_decay_at(step: int, cfg: TeacherConfig) -> float:
    """fairseq's ``get_annealed_rate``: linear from ema_decay at step 0 to ema_end_decay at ema_anneal_end_step."""
    if cfg.ema_decay == cfg.ema_end_decay or step >= cfg.ema_anneal_end_step:
        return cfg.ema_end_decay
    return cfg.ema_end_decay - (cfg.ema_end_decay - cfg.ema_decay) * (1 - step / cfg.ema_anneal_end_step)


class EMATeacher(nn.Module):
    """A frozen fp32 copy of ``student`` that follows it by EMA. Its weights are part of the model's state
    dict (so checkpoints resume it exactly) and never reach the optimizer (``requires_grad=False``)."""

    def __init__(self, student: nn.Module, cfg: TeacherConfig):
        super().__init__()
        self.cfg = cfg
        self.model = copy.deepcopy(student).float().requires_grad_(False)
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))   # training forwards seen
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))    # EMA updates applied

    def train(self, mode: bool = True) -> "EMATeacher":
        super().train(mode)
        self.model.eval()       # the teacher never drops out
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float) -> None:
        """teacher <- decay * teacher + (1 - decay) * student for trained parameters; parameters the student
        does not train (e.g. fixed position embeddings) and buffers are copied, as fairseq's EMAModule does."""
        theirs = dict(student.named_parameters())
        if any(type(p).__name__ == "DTensor" for p in theirs.values()):
            raise ConfigError("the EMA teacher cannot follow a student sharded with FSDP yet "
                               "(trainer.fsdp=true): train data2vec with DDP (trainer.fsdp=false)")
        lerp_t, lerp_s = [], []
        for name, t in self.model.named_parameters():
            s = theirs[name]
            if s.requires_grad:
                lerp_t.append(t)
                lerp_s.append(s.detach().to(t.dtype))
            else:
                t.copy_(s)
        if lerp_t:
            torch._foreach_lerp_(lerp_t, lerp_s, 1.0 - decay)
        for (_, t), (_, s) in zip(self.model.named_buffers(), student.named_buffers()):
            t.copy_(s)
        self.updates += 1

    def maybe_update(self, student: nn.Module, accumulate: int = 1) -> None:
        """Call once per training forward (micro-batch): at the first micro-batch of optimizer step n >= 1 the
        teacher takes the EMA step fairseq takes after step n. ``accumulate``: micro-batches per optimizer step."""
        if not self.training:
            return
        step, first = divmod(int(self.forwards), max(1, accumulate))
        if first == 0 and step > int(self.updates):
            self.update(student, ema_decay_at(step, self.cfg))
        self.forwards += 1

    @torch.no_grad()
    def targets(self, block_outputs: Callable[..., list[torch.Tensor]], *inputs,
                padding_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Run the teacher on ``inputs`` and build the regression targets, (B, T, D) fp32."""
        y = make_targets(block_outputs(self.model, *inputs, **kwargs), self.cfg.top_k,
                         self.cfg.instance_norm_layers, self.cfg.final_norm, padding_mask)
        if not self.cfg.centre_positions:
            return y
        if y.shape[0] < 2:
            raise ConfigError(f"teacher.centre_positions needs at least 2 samples per micro-batch to take each "
                              f"position's mean over, not {y.shape[0]}: raise trainer.batch_size or lower "
                              f"trainer.grad_accum")
        return centre_positions(y, padding_mask)


def _instance_norm(x: torch.Tensor, padding_mask: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """Normalise each sample's channels over the sequence: (B, T, D). Padded positions (mask True) are left out
    of the statistics (fairseq does not mask them; without padding the two agree)."""
    if padding_mask is None:
        return F.instance_norm(x.transpose(1, 2), eps=eps).transpose(1, 2)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)                            # (B, T, 1)
    n = keep.sum(1, keepdim=True).clamp_min(1)
    mean = (x * keep).sum(1, keepdim=True) / n
    var = ((x - mean).pow(2) * keep).sum(1, keepdim=True) / n                   # biased, as instance_norm
    return (x - mean) / (var + eps).sqrt() * keep


def make_targets(outputs: list[torch.Tensor], top_k: int, instance_norm: bool = True, final_norm: str = "layer",
                 padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """fairseq's ``make_targets``: the mean of the last ``top_k`` block outputs (B, T, D), each instance-normalised
    over T first; then an optional parameter-free layer norm (over D) or instance norm (over T) of the mean."""
    if not 1 <= top_k <= len(outputs):
        raise ValueError(f"top_k={top_k} must be between 1 and the number of blocks ({len(outputs)})")
    if final_norm not in ("none", "layer", "instance"):
        raise ValueError(f"final_norm must be none, layer or instance, not '{final_norm}'")
    layers = [o.float() for o in outputs[-top_k:]]
    if instance_norm:
        layers = [_instance_norm(o, padding_mask) for o in layers]
    y = torch.stack(layers).mean(0)                                              # (B, T, D)
    if final_norm == "layer":
        y = F.layer_norm(y, y.shape[-1:])
    elif final_norm == "instance":
        y = _instance_norm(y, padding_mask)
    return y


def centre_positions(y: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, D) targets minus each position's mean over the batch's real (unpadded) samples: what is left cannot be
    predicted from the position alone."""
    keep = torch.ones_like(y[..., :1]) if padding_mask is None else (~padding_mask).unsqueeze(-1).to(y.dtype)
    mean = (y * keep).sum(0, keepdim=True) / keep.sum(0, keepdim=True).clamp_min(1)   # (1, T, D)
    return (y - mean) * keep


def clone_batch(x: torch.Tensor, m: int) -> torch.Tensor:
    """Each sample repeated ``m`` times in place, (B, ...) -> (B*m, ...): sample b's copies are rows b*m..b*m+m-1,
    matching inputs repeated the same way and given m different masks."""
    return x.repeat_interleave(m, dim=0) if m > 1 else x


def regression_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 0.0) -> torch.Tensor:
    """fairseq's ``d2v_loss`` per position: squared error summed over the feature dim, times ``scale``
    (0: 1/sqrt(D)). (N, D), (N, D) -> (N,). fairseq sums these and divides by the number of masked positions,
    i.e. takes their mean."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    scale = scale or 1 / math.sqrt(pred.shape[-1])
    return (pred.float() - target.float()).pow(2).sum(-1) * scale
