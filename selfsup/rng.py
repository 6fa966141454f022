"""Random number generators: seeding a process, saving and restoring every global RNG, and seeds derived
from keys, so that a task's randomness depends only on (seed, rank, position) and never on call order."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mix_seed(*keys: int) -> int:
    """One 31-bit seed from integer keys: mix_seed(seed, rank, iteration) names one stream."""
    h = 0x345678
    for k in keys:
        h = (h * 1_000_003 + int(k) + 0x9E37) % (2**31 - 1)
    return h


def generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private generator seeded from ``keys`` (see mix_seed); the global RNG is not touched."""
    return torch.Generator(device).manual_seed(mix_seed(*keys))


def rng_state() -> dict:
    """Every global RNG of this process, as plain tensors and numbers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
