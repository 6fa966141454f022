"""Procedurally rendered scenes: seeded scene graphs of a few objects, rendered to RGB at any size.

Each image comes with its scene graph (shape, colour, size and position of every object, and the
background), which the probes turn into labels and the captioning package into captions. No
download: the same seed always gives the same scenes, on any machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from selfsup.errors import ConfigError
from selfsup.progress import progress as bar

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 90, 230), "yellow": (235, 215, 40),
           "purple": (150, 60, 200), "orange": (245, 140, 30), "white": (235, 235, 235)}
SIZES = {"small": 0.12, "medium": 0.18, "large": 0.26}          # radius as a fraction of the image side
BACKGROUNDS = {"black": (15, 15, 20), "grey": (90, 90, 95), "navy": (20, 25, 70), "brown": (70, 45, 25)}
ATTRIBUTES = ("shape", "colour", "size", "count", "background", "position")  # what a probe can predict
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")   # "position": where the main object's centre is


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float          # centre, 0 (left) .. 1 (right)
    y: float          # centre, 0 (top) .. 1 (bottom)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    stripes: bool = False   # a faint diagonal texture on the background

    def main_object(self) -> SceneObject:
        """The largest object (sampling keeps it unique): what 'the shape of the scene' means."""
        return self.objects[0]

    def label(self, attribute: str) -> int:
        o = self.main_object()
        if attribute == "shape":
            return SHAPES.index(o.shape)
        if attribute == "colour":
            return list(COLOURS).index(o.colour)
        if attribute == "size":
            return list(SIZES).index(o.size)
        if attribute == "count":
            return len(self.objects) - 1
        if attribute == "background":
            return list(BACKGROUNDS).index(self.background)
        if attribute == "position":
            return int(2 * (o.y >= 0.5) + (o.x >= 0.5))
        raise ConfigError(f"unknown scene attribute '{attribute}'; choose one of {', '.join(ATTRIBUTES)}")


def num_classes(attribute: str, max_objects: int = 3) -> int:
    return {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES), "count": max_objects,
            "background": len(BACKGROUNDS), "position": len(QUADRANTS)}[attribute]


def sample_scene(rng: np.random.Generator, max_objects: int = 3,
                 exclude: frozenset[tuple[str, str]] = frozenset(),
                 only: frozenset[tuple[str, str]] | None = None) -> Scene:
    """A random scene; ``exclude``/``only`` restrict (colour, shape) pairs (held-out combinations)."""
    n = int(rng.integers(1, max_objects + 1))
    objects: list[SceneObject] = []
    while len(objects) < n:
        colour, shape = list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))]
        if (colour, shape) in exclude or (only is not None and (colour, shape) not in only):
            continue
        # the first object is strictly the largest, so "the main object" of a scene is never ambiguous
        size = list(SIZES)[rng.integers(1, len(SIZES)) if not objects
                           else rng.integers(list(SIZES).index(objects[0].size))]
        r = SIZES[size]
        for _ in range(50):   # place without heavy overlap
            x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
            if all(math.hypot(x - o.x, y - o.y) > 0.8 * (r + SIZES[o.size]) for o in objects):
                objects.append(SceneObject(shape, colour, size, round(float(x), 3), round(float(y), 3)))
                break
        else:
            break           # no room left: fewer objects
    return Scene(tuple(objects), list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], bool(rng.random() < 0.3))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        k = r * 0.85
        return [(cx - k, cy - k), (cx + k, cy - k), (cx + k, cy + k), (cx - k, cy + k)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "cross":
        a, b = r, r * 0.35
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b),
                (cx + a, cy + b), (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a),
                (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b)]
    raise ValueError(f"unknown shape '{shape}'")


def render(scene: Scene, size: int, supersample: int = 4) -> np.ndarray:
    """The scene as an (size, size, 3) uint8 array, anti-aliased by supersampling."""
    s = size * supersample
    img = Image.new("RGB", (s, s), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    if scene.stripes:
        shade = tuple(min(255, c + 25) for c in BACKGROUNDS[scene.background])
        for k in range(-s, s, max(4, s // 8)):
            draw.line([(k, 0), (k + s, s)], fill=shade, width=max(1, s // 32))
    for o in scene.objects:
        cx, cy, r = o.x * s, o.y * s, SIZES[o.size] * s
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLOURS[o.colour])
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r), fill=COLOURS[o.colour])
    return np.array(img.resize((size, size), Image.BOX))


@dataclass
class RenderedScenes:
    images: torch.Tensor                 # (N, 3, H, W) uint8
    scenes: list[Scene] = field(repr=False)

    def labels(self, attribute: str) -> torch.Tensor:
        return torch.tensor([s.label(attribute) for s in self.scenes])


def render_scenes(n: int, size: int, seed: int, max_objects: int = 3, progress: bool = True,
                  **restrict) -> RenderedScenes:
    """``n`` scenes from ``seed``, rendered once into a uint8 tensor."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, max_objects, **restrict) for _ in range(n)]
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i, sc in enumerate(bar(scenes, desc=f"render {n} scenes", min_total=2000, enabled=progress)):
        images[i] = torch.from_numpy(render(sc, size)).permute(2, 0, 1)
    return RenderedScenes(images, scenes)
