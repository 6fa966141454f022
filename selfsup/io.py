"""Atomic file writes: write a temporary sibling, fsync it, rename over the target, fsync the folder.

A crash at any point leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp_path)`` produces the content; it becomes ``path`` only once complete and on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)   # mkstemp (and some writers) make 0600; run files are shared like any checkpoint
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp_dir)`` fills a temporary sibling folder (e.g. a library's ``save_pretrained``); then each of its
    files replaces its namesake in ``path`` atomically, so a crash never leaves a torn file there."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                target = path / f.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.chmod(f, 0o644)
                os.replace(f, target)
        fsync_dir(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG, written atomically, then closed."""
    import io

    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))
    return Path(path)
