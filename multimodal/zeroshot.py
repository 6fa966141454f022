"""Zero-shot classification: each class is the text embedding of its prompts, averaged over templates in embedding
space (open_clip's ``build_zero_shot_classifier``); an image takes the class whose embedding is nearest.

Rendered scenes are classified by attribute (shape, colour, size, count, background) with prompts in the caption
grammar's words; a template fills the class into phrases that name the scene's other attributes in every way, so
the class embedding averages them out. Any ImageFolder is classified by its folder names with open_clip's
ImageNet templates.
"""
from __future__ import annotations

import torch
from open_clip import build_zero_shot_classifier
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

from vision.scenes import BACKGROUNDS, COLOURS, SHAPES, SIZES

from .captions import NUMBERS

COUNTS = tuple(f"{NUMBERS[n]} {'shape' if n == 1 else 'shapes'}" for n in (1, 2, 3))   # label = objects - 1
FOLDER_TEMPLATES = {"simple": SIMPLE_IMAGENET_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES}


def scene_prompts(attribute: str) -> tuple[list[str], list[str]]:
    """(class names in label order, templates with one ``{}``) for a scene attribute (vision.scenes.Scene.label)."""
    prompts = {
        "shape": (SHAPES, ["a picture of a {}", "the largest shape is a {}"]
                  + [f"the largest shape is a {c} {{}}" for c in COLOURS]),
        "colour": (COLOURS, [f"the largest shape is a {{}} {s}" for s in SHAPES]
                   + [f"a picture of a {z} {{}} {s}" for z in SIZES for s in SHAPES]),
        "size": (SIZES, [f"a picture of a {{}} {c} {s}" for c in COLOURS for s in SHAPES]),
        "count": (COUNTS, ["{}"] + [f"{{}} on a {b} background" for b in BACKGROUNDS]),
        "background": (BACKGROUNDS, [f"{n} on a {{}} background" for n in COUNTS]),
    }
    if attribute not in prompts:
        raise ValueError(f"no zero-shot prompts for scene attribute '{attribute}'; choose from {', '.join(prompts)}")
    names, templates = prompts[attribute]
    return list(names), templates


def folder_prompts(classes: list[str], templates: str = "simple") -> tuple[list[str], list]:
    """An ImageFolder's class folder names as words (``pickup_truck`` -> ``pickup truck``) and open_clip's templates:
    ``simple`` (its 7 ImageNet templates) or ``openai`` (CLIP's 80)."""
    if templates not in FOLDER_TEMPLATES:
        raise ValueError(f"task.eval.zeroshot_templates must be one of {', '.join(FOLDER_TEMPLATES)}, "
                         f"not '{templates}'")
    return [c.replace("_", " ") for c in classes], list(FOLDER_TEMPLATES[templates])


@torch.no_grad()
def zeroshot_classifier(model, classnames: list[str], templates: list) -> torch.Tensor:
    """(E, C): unit-norm class embeddings, each the normalised mean of its prompts' normalised embeddings."""
    device = next(model.parameters()).device
    return build_zero_shot_classifier(model, model.text.tokenize, classnames, templates, num_classes_per_batch=10,
                                      device=device).float().cpu()


def zeroshot_accuracy(image_features: torch.Tensor, classifier: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of unit-norm image features (N, E) against class embeddings (E, C)."""
    return ((image_features @ classifier).argmax(1) == labels).float().mean().item()
