"""Checkpoints on disk: one folder per step, written atomically, each file's checksum in meta.json.

    checkpoints/step_00000100/
        model.safetensors   weights (tied tensors stored once, their aliases in the metadata)
        ema.safetensors     EMA weights, when EMA is on
        state.pt            optimizer, scheduler, scaler, train state (step, counters, RNG of every kind and
                            rank), task state; plain tensors and containers, loaded with weights_only=True
        meta.json           step, config hash, code version, world size, time, sha256 of every file above

A folder is written under a temporary name (``.step_X.tmp-PID``) and renamed into place only when complete,
so a crash while saving leaves the previous checkpoints as they were; ``clean_stale`` removes what a killed
writer left. Every read checks the file's sha256 against meta.json: garbled bytes are refused, never loaded,
and ``resolve_checkpoint`` falls back to the newest checkpoint that is intact, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError
from .io import atomic_write, fsync_dir
from .rng import rng_state, set_rng_state  # noqa: F401  (re-exported: older imports read them from here)

STEP_DIR = re.compile(r"^step_(\d{8})$")
TEMP_DIR = re.compile(r"^\.(step_\d{8})\.(tmp|old)-(\d+)$")

__all__ = ["CheckpointError", "check_fits", "clean_stale", "latest_checkpoint", "list_checkpoints", "load_state",
           "load_weights", "newest_intact", "read_meta", "resolve_checkpoint", "save_checkpoint", "save_weights",
           "verify_checkpoint"]


# ---------------------------------------------------------------------------- weights


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses shared tensors; store each tied tensor once and record its aliases. Written atomically,
    mode 0644."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in state.items():
        t = t.detach()
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and ident in seen:
            aliases[name] = seen[ident]
            continue
        seen[ident] = name
        tensors[name] = t.to("cpu").contiguous().clone()
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"aliases": json.dumps(aliases)}))


def load_weights(path: str | Path, expected: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Read weights (checksum-verified inside a checkpoint folder); with ``expected`` (a model's state_dict)
    check names and shapes first."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {path}")
    verify_file(path)
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


# ---------------------------------------------------------------------------- integrity


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple, str] = {}   # (path, size, mtime) -> digest: each file is hashed once per process


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def read_meta(ckpt: Path) -> dict:
    path = Path(ckpt) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); the checkpoint folder is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files", {}), dict):
        raise CheckpointError(f"{path} is not a selfsup checkpoint's meta.json (expected a JSON object with "
                              f"'step' and 'files', found {type(meta).__name__}); the checkpoint folder is damaged")
    return meta


def verify_file(path: Path) -> None:
    """Inside a checkpoint folder whose meta.json records checksums, the file must match its checksum."""
    meta_path = path.parent / "meta.json"
    if not (STEP_DIR.match(path.parent.name) and meta_path.is_file()):
        return
    expected = read_meta(path.parent).get("files", {}).get(path.name)
    if expected is not None and _digest(path) != expected:
        raise CheckpointError(f"{path} does not match the sha256 recorded in {meta_path}: its bytes were changed "
                              "after it was saved (disk or copy error); use an older checkpoint folder beside it")


def verify_checkpoint(ckpt: Path) -> dict:
    """Every file recorded in meta.json is present and intact; returns the meta."""
    meta = read_meta(ckpt)
    for name in meta.get("files", {}):
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt / name} is missing (listed in {ckpt / 'meta.json'})")
        verify_file(ckpt / name)
    return meta


# ---------------------------------------------------------------------------- folders


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders (renamed into place, with meta.json), oldest first; not yet verified."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint folder, not verified (``newest_intact`` gives the one to load)."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def newest_intact(root: str | Path, read: Callable[[Path], object] = verify_checkpoint):
    """``(folder, read(folder))`` for the newest checkpoint that ``read`` accepts (default: its checksums verify);
    damaged ones are skipped with a warning. ``(None, None)`` when there is none; an error when all are damaged."""
    problems = []
    for ckpt in reversed(list_checkpoints(root)):
        try:
            return ckpt, read(ckpt)
        except CheckpointError as e:
            problems.append(str(e).splitlines()[0])
            warnings.warn(f"skipping damaged checkpoint {ckpt.name}: {problems[-1]}", stacklevel=2)
    if problems:
        raise CheckpointError(f"no intact checkpoint in {root}:\n  " + "\n  ".join(problems))
    return None, None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (verified), or a run folder / checkpoints folder (its newest intact checkpoint)."""
    path = Path(path)
    if (path / "meta.json").is_file():
        verify_checkpoint(path)
        return path
    for root in (path / "checkpoints", path):
        latest, _ = newest_intact(root)
        if latest is not None:
            return latest
    raise CheckpointError(f"no checkpoint at {path}: expected a step_XXXXXXXX folder, or a run folder "
                          "whose checkpoints/ holds one")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(root: str | Path) -> list[str]:
    """Remove what writers killed while saving left behind (``.step_X.tmp-PID`` of a dead PID). A kill between
    the two renames of a re-save leaves the complete old folder as ``.step_X.old-PID``: it is put back."""
    root = Path(root)
    done = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        m = TEMP_DIR.match(p.name)
        if not m or (int(m.group(3)) != os.getpid() and _alive(int(m.group(3)))):
            continue
        final = root / m.group(1)
        if m.group(2) == "old" and not final.exists() and (p / "meta.json").is_file():
            os.rename(p, final)
            done.append(f"restored {final.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


def save_checkpoint(root: str | Path, step: int, model_state: dict, state: dict, meta: dict,
                    ema_state: dict | None = None, keep_last: int = 3) -> Path:
    """Write ``root/step_{step}`` atomically; keep the newest ``keep_last`` (0: all)."""
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
        files = {}
        for f in sorted(tmp.iterdir()):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(f, 0o644)                 # shared like any checkpoint, whatever the umask
            files[f.name] = sha256_file(f)
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "saved_at": time.time(), "files": files},
                                                  indent=2))
        with open(tmp / "meta.json", "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp / "meta.json", 0o644)
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
    path = Path(ckpt) / "state.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint state not found: {path}")
    verify_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"{path} cannot be loaded safely ({type(e).__name__}: {first}); "
                              "it is truncated, corrupt, or not a selfsup checkpoint") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a selfsup checkpoint state (no 'step'); the folder is damaged")
    return state
