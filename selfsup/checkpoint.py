"""Checkpoints: one folder per step, written atomically, the last k kept.

    checkpoints/step_00000100/
        model.safetensors   weights (tied tensors stored once, their aliases in the metadata)
        ema.safetensors     EMA weights, when EMA is on
        state.pt            optimizer, scheduler, scaler, step, RNG of every kind and rank, task state;
                            plain tensors and containers, loaded with weights_only=True
        meta.json           step, config hash, code version, world size, time

A folder is written under a temporary name and renamed into place only when complete, so a
crash while saving leaves the previous checkpoints as they were.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .io import fsync_dir

STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


# ---------------------------------------------------------------------------- weights


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses shared tensors; store each tied tensor once and record its aliases."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in state.items():
        t = t.detach()
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and ident in seen:
            aliases[name] = seen[ident]
            continue
        seen[ident] = name
        tensors[name] = t.to("cpu").contiguous().clone()
    save_file(tensors, str(path), metadata={"aliases": json.dumps(aliases)})


def load_weights(path: str | Path, expected: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Read weights; with ``expected`` (a model's state_dict) check names and shapes first."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                              "it is truncated or corrupt — resume from an older checkpoint folder beside it") from None
    for name, source in aliases.items():
        state[name] = state[source]
    if expected is not None:
        check_fits(state, expected, path)
    return state


def check_fits(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        def head(items):
            return ", ".join(items[:8]) + (f" … (+{len(items) - 8} more)" if len(items) > 8 else "")
        lines = [f"{path} does not match the model (was it saved with another config or task?):"]
        if missing:
            lines.append(f"  missing in checkpoint ({len(missing)}): {head(missing)}")
        if unexpected:
            lines.append(f"  not in model ({len(unexpected)}): {head(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatch ({len(shapes)}): {head(shapes)}")
        raise CheckpointError("\n".join(lines))


# ---------------------------------------------------------------------------- RNG


def rng_state() -> dict:
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


# ---------------------------------------------------------------------------- folders


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, a run folder (its latest checkpoint) or a checkpoints/ folder."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    for root in (path / "checkpoints", path):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise CheckpointError(f"no checkpoint at {path}: expected a step_XXXXXXXX folder, or a run folder "
                          "whose checkpoints/ holds one")


def save_checkpoint(root: str | Path, step: int, model_state: dict, state: dict, meta: dict,
                    ema_state: dict | None = None, keep_last: int = 3) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_weights(model_state, tmp / "model.safetensors")
        if ema_state is not None:
            save_weights(ema_state, tmp / "ema.safetensors")
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "saved_at": time.time()}, indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. SIGTERM right after a periodic save): swap, then drop the old
            old = root / f".{final.name}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_state(ckpt: Path) -> dict:
    path = ckpt / "state.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint state not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0]}); "
                              "it is truncated, corrupt, or not a selfsup checkpoint") from None


def read_meta(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / 'meta.json'} is unreadable: {e}") from None
