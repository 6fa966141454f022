"""Frozen features of a vision encoder, for the probes in selfsup.probes."""
from __future__ import annotations

import torch
from torch import nn

from selfsup.encoders import encoder_device
from selfsup.progress import progress

from .transforms import eval_view

PROGRESS_MIN = 2048   # images from which feature extraction shows a progress bar (on a terminal)


@torch.no_grad()
def extract_features(encoder: nn.Module, images, indices: torch.Tensor | None = None, size: int | None = None,
                     batch_size: int = 256, desc: str = "features") -> dict[str, torch.Tensor]:
    """{"cls": (N, D), "mean": (N, D)} on CPU, encoder in eval mode.

    ``images``: a uint8 tensor (N, 3, H, W) already at the encoder's size, or an image set (``take``) whose
    ``indices`` are read batch by batch — so a large set is never held in memory at once — and brought to
    ``size`` by the evaluation crop."""
    device = encoder_device(encoder)
    if torch.is_tensor(images):
        n, fetch = len(images), lambda i: images[i:i + batch_size]
    else:
        indices = torch.arange(len(images)) if indices is None else indices
        n = len(indices)
        fetch = lambda i: eval_view(images.take(indices[i:i + batch_size]), size)  # noqa: E731
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list[torch.Tensor]] = {"cls": [], "mean": []}
    for i in progress(range(0, n, batch_size), desc=desc, min_total=-(-PROGRESS_MIN // batch_size), leave=False):
        feats = encoder(fetch(i).to(device))
        for k in out:
            out[k].append(feats[k].float().cpu())
    encoder.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}
