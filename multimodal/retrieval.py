"""Image-text retrieval, both ways, with several captions per image — clip_benchmark's protocol:

- image retrieval (text -> image): each caption is a query; its target is its own image;
- text retrieval (image -> text): each image is a query; it is retrieved correctly if *any* of its captions ranks
  within the top k.

Recall@k is the fraction of queries whose best-ranked target lies within the top k. The rank of a target is the
number of candidates scoring strictly higher, so exact ties go in the query's favour (identical caption strings
embed identically: retrieving a string equal to one of the image's own captions counts as correct).
"""
from __future__ import annotations

import math

import torch


def retrieval_recall(scores: torch.Tensor, text_image: torch.Tensor, ks=(1, 5, 10),
                     chunk: int = 4096) -> dict[str, float]:
    """``scores`` (T, I): similarity of every caption to every image; ``text_image`` (T,): each caption's image.
    Returns image_retrieval_recall@k (text -> image) and text_retrieval_recall@k (image -> text)."""
    num_texts, num_images = scores.shape
    if text_image.shape != (num_texts,):
        raise ValueError(f"text_image must have shape ({num_texts},), not {tuple(text_image.shape)}")
    if torch.bincount(text_image, minlength=num_images).min() == 0:
        raise ValueError("every image needs at least one caption")
    own = scores.gather(1, text_image[:, None]).squeeze(1)                              # (T,) score of own image
    # the best score of any of an image's own captions
    best = torch.full((num_images,), float("-inf"), dtype=scores.dtype).scatter_reduce(0, text_image, own, "amax")
    t2i_rank = torch.empty(num_texts, dtype=torch.long)
    i2t_rank = torch.zeros(num_images, dtype=torch.long)
    for i in range(0, num_texts, chunk):                             # chunks bound the memory (COCO: 25k x 5k)
        block = scores[i:i + chunk]                                                     # (t, I)
        t2i_rank[i:i + chunk] = (block > own[i:i + chunk, None]).sum(1)                 # images above the own image
        i2t_rank += (block > best[None, :]).sum(0)                                      # captions above the best own
    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = (t2i_rank < k).float().mean().item()
        out[f"text_retrieval_recall@{k}"] = (i2t_rank < k).float().mean().item()
    return out


def chance_recall(text_image: torch.Tensor, num_images: int, ks=(1, 5, 10)) -> dict[str, float]:
    """Expected recall of a random ranking: k/I for a caption's image; for an image with m of the T captions,
    1 - C(T - m, k) / C(T, k) (at least one of its captions among k drawn)."""
    num_texts = len(text_image)
    per_image = torch.bincount(text_image, minlength=num_images).tolist()
    out = {}
    for k in ks:
        drawn = min(k, num_texts)                  # k at least the number of captions: all of them are drawn
        out[f"image_retrieval_recall@{k}_chance"] = min(k, num_images) / num_images
        out[f"text_retrieval_recall@{k}_chance"] = sum(
            1 - math.comb(num_texts - m, drawn) / math.comb(num_texts, drawn) for m in per_image) / num_images
    return out
