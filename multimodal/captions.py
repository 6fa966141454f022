"""Captions for rendered scenes from their scene graphs: a small grammar that gives several different,
all correct, references per image (attributes, counts, spatial relations, background)."""
from __future__ import annotations

import random

from vision.scenes import SHAPES, Scene, SceneObject

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
PLURAL = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}
# (colour, shape) pairs never seen in training: the compositional-generalisation split uses only these
HELD_OUT = frozenset({("red", "circle"), ("blue", "triangle"), ("green", "square"), ("yellow", "cross"),
                      ("purple", "diamond"), ("white", "circle"), ("orange", "square")})


def noun_phrase(o: SceneObject, article: str = "a", size: bool = True) -> str:
    words = [article] + ([o.size] if size else []) + [o.colour, o.shape]
    return " ".join(words)


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where a is relative to b, by the larger of the horizontal and vertical offsets."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def captions(scene: Scene, n: int = 5, seed: int = 0) -> list[str]:
    """``n`` distinct references (fewer if the grammar runs out) for one scene."""
    rng = random.Random(seed)
    objs, main = list(scene.objects), scene.objects[0]
    count = f"{NUMBERS[len(objs)]} {'shape' if len(objs) == 1 else 'shapes'}"
    options = [
        f"{noun_phrase(main)} on a {scene.background} background",
        f"{count} on a {scene.background} background",
        f"the largest shape is {noun_phrase(main, size=False)}",
        f"a picture of {noun_phrase(main)}" + (f" and {len(objs) - 1} more" if len(objs) > 1 else ""),
        " and ".join(noun_phrase(o) for o in objs),
    ]
    if len(objs) > 1:
        other = objs[rng.randrange(1, len(objs))]
        options += [f"{noun_phrase(main)} {relation(main, other)} {noun_phrase(other)}",
                    f"{noun_phrase(other, size=False)} {relation(other, main)} {noun_phrase(main, size=False)}"]
    else:
        options.append(f"a single {main.colour} {main.shape} on {scene.background}")
    if scene.stripes:
        options.append(f"{noun_phrase(main)} on a striped {scene.background} background")
    same = [o for o in objs if o.shape == main.shape]
    if len(same) > 1:
        options.append(f"{NUMBERS[len(same)]} {PLURAL[main.shape]}")
    rng.shuffle(options)
    out = list(dict.fromkeys(options))
    return out[:n]
