"""Configuration: nested dataclasses, named presets, YAML files and dotted overrides.

Parsing, type checking and merging are OmegaConf's; this file only decides the order
(defaults < preset < YAML file < --set overrides) and turns OmegaConf's errors into
messages that name the key and the valid choices.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import ConfigError

__all__ = ["ConfigError", "TrainerConfig", "check_trainer", "config_hash", "load_saved", "resolve", "to_object",
           "to_yaml"]


@dataclass
class TrainerConfig:
    max_steps: int = 100            # optimizer steps; the LR schedule spans exactly these
    batch_size: int = 32            # global batch: summed over ranks and accumulation micro-steps
    grad_accum: int = 1             # micro-steps per optimizer step
                                    # (per-rank micro-batch = batch_size / (world * grad_accum))
    lr: float = 1e-3                # peak learning rate (after warmup)
    min_lr_ratio: float = 0.0       # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 0           # linear warmup from 0 to lr
    weight_decay: float = 0.0       # AdamW decoupled decay; never applied to norms, biases or embeddings
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0          # max global grad norm; 0 turns clipping off
    ema_decay: float = 0.0          # EMA of weights (e.g. 0.999), in [0, 1); 0 turns it off
    precision: str = "auto"        # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16 (with GradScaler)
    compile: bool = False           # torch.compile the model
    fsdp: bool = False              # shard with FSDP2 (fully_shard) instead of DDP when running under torchrun
    device: str = "auto"           # auto (cuda > mps > cpu) | cpu | cuda | mps
    seed: int = 0
    num_workers: int = 0            # DataLoader worker processes per rank
    log_every: int = 10             # steps between metrics.jsonl / TensorBoard records
    checkpoint_every: int = 0       # steps between checkpoints; 0: only at the end (and on SIGTERM)
    keep_last: int = 3              # checkpoints kept on disk (older ones are deleted after a good save); 0: all
    max_nonfinite: int = 5          # consecutive skipped steps with a NaN/inf loss or gradient before the run stops
    stop_at: int = 0                # end this invocation at this step with a checkpoint (0: max_steps);
                                    # for time-sliced jobs
    eval_at_end: bool = True        # run the task's evaluation after training and write results.json
    eval_every: int = 0             # also evaluate every N steps (results.json keeps each step's records)
    count_flops: bool = True        # count FLOPs of one step with torch.utils.flop_counter for MFU
    tensorboard: bool = True        # write TensorBoard events next to metrics.jsonl
    progress: bool = True           # progress bar with ETA on rank 0


CHOICES = {"precision": ("auto", "fp32", "bf16", "fp16"), "device": ("auto", "cpu", "cuda", "mps")}
AT_LEAST = {"max_steps": 0, "batch_size": 1, "grad_accum": 1, "lr": 0, "warmup_steps": 0, "weight_decay": 0,
            "eps": 0, "grad_clip": 0, "num_workers": 0, "log_every": 1, "checkpoint_every": 0, "keep_last": 0,
            "max_nonfinite": 1, "stop_at": 0, "eval_every": 0}
UNIT_INTERVAL = ("min_lr_ratio", "beta1", "beta2", "ema_decay")     # in [0, 1] (betas and ema_decay below 1)


def check_trainer(tc: TrainerConfig) -> None:
    """Every trainer value in range, before anything runs; the error names the key and the valid range."""
    for key, low in AT_LEAST.items():
        v = getattr(tc, key)
        if not v >= low or (key == "eps" and v == 0):
            bound = "> 0" if key == "eps" else f">= {low}"
            raise ConfigError(f"trainer.{key}={v} is out of range: it must be {bound}")
    for key in UNIT_INTERVAL:
        v = getattr(tc, key)
        closed = key == "min_lr_ratio"
        if not (0 <= v <= 1 if closed else 0 <= v < 1):
            raise ConfigError(f"trainer.{key}={v} is out of range: it must be in [0, 1{']' if closed else ')'}")
    for key, choices in CHOICES.items():
        if getattr(tc, key) not in choices:
            raise ConfigError(f"trainer.{key} must be one of {', '.join(choices)}, not '{getattr(tc, key)}'")
    if tc.fsdp and tc.ema_decay > 0:
        raise ConfigError("trainer.ema_decay is not supported with trainer.fsdp=true yet; turn one of them off")


def run_config_class(task_config_cls: type) -> type:
    """The top-level dataclass for one task: ``task`` (the task's own config) and ``trainer``."""
    return dataclasses.make_dataclass(
        f"{task_config_cls.__name__}Run",
        [
            ("task", task_config_cls, field(default_factory=task_config_cls)),
            ("trainer", TrainerConfig, field(default_factory=TrainerConfig)),
        ],
    )


def _valid_keys(cfg: DictConfig, dotted: str) -> list[str]:
    node: Any = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            break
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _check_shape(cfg: DictConfig, other, source: str, prefix: str = "") -> None:
    """A section of the schema (trainer, task, task.data, ...) must be given as a mapping, not a list or a value."""
    if not isinstance(other, (dict, DictConfig)):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping of keys (e.g. trainer: {{max_steps: 100}}), "
                          f"not {type(other).__name__.replace('Config', '').lower()}")
    for key, value in other.items():
        if isinstance(key, str) and key in cfg and isinstance(cfg[key], DictConfig):
            _check_shape(cfg[key], value, source, f"{prefix}{key}.")


def _merge(cfg: DictConfig, other: DictConfig | dict, source: str) -> DictConfig:
    _check_shape(cfg, other, source)
    try:
        return OmegaConf.merge(cfg, other)
    except (ConfigKeyError, ConfigAttributeError) as e:
        key = e.full_key or str(e.key)
        raise ConfigError(f"{source}: unknown config key '{key}'. "
                          f"Valid keys here: {', '.join(_valid_keys(cfg, key))}") from None
    except ValidationError as e:
        msg = (e.msg or str(e) or type(e).__name__).splitlines()[0]
        raise ConfigError(f"{source}: bad value for '{e.full_key}': {msg}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: {e}") from None


def parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. trainer.max_steps=100")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from None


def resolve(task_config_cls: type, presets: dict[str, dict], preset: str | None = None,
            yaml_file: str | Path | None = None, overrides: list[str] = (),
            base: DictConfig | None = None) -> DictConfig:
    """Defaults < preset < YAML file < dotted overrides; ``base`` (a saved config) replaces defaults+preset."""
    cfg = base if base is not None else OmegaConf.structured(run_config_class(task_config_cls))
    if base is None and preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}'. Valid presets: {', '.join(sorted(presets)) or '(none)'}")
        cfg = _merge(cfg, presets[preset], f"preset '{preset}'")
    if yaml_file is not None:
        cfg = _merge(cfg, read_yaml(yaml_file), str(yaml_file))
    if overrides:
        cfg = _merge(cfg, parse_overrides(list(overrides)), "--set")
    check_trainer(to_object(cfg).trainer)
    return cfg


def read_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except Exception as e:  # yaml syntax errors come in several types
        raise ConfigError(f"cannot parse config file {path}: {e}") from None


def load_saved(task_cls: type, path: Path) -> DictConfig:
    """A run directory's config.yaml, checked against the task's current schema.

    A run saved by an older version may have another layout: a task class may define
    ``migrate_config(data: dict) -> dict``, which turns the saved YAML (a plain dict) into the current layout before
    the check; what moved is printed. ``trainer.stop_at`` belongs to the invocation that set it, so a resumed run
    starts without it."""
    loaded = read_yaml(path)
    migrate = getattr(task_cls, "migrate_config", None)
    if migrate is not None and isinstance(loaded, DictConfig):
        old = OmegaConf.to_container(loaded)
        new = migrate(copy.deepcopy(old))
        moved = _moved(old, new)
        if moved:
            print(f"[selfsup] {path} was written in an older layout of task '{getattr(task_cls, 'name', '?')}'; "
                  f"read in the current one: {moved} (a resumed run saves it in the current layout)",
                  file=sys.stderr, flush=True)
        loaded = OmegaConf.create(new)
    cfg = resolve(task_cls.Config, {}, base=_merge(OmegaConf.structured(run_config_class(task_cls.Config)), loaded,
                                                   str(path)))
    cfg.trainer.stop_at = 0
    return cfg


def _moved(old: dict, new: dict) -> str:
    """What a migration changed, by section: "task.model.* (12 keys) -> task.vit.* (7 keys), task.mae.* (5 keys)"."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    def sections(keys):     # task.model.img_size, task.model.depth -> "task.model.* (2 keys)"; task.x stays
        groups = Counter(k.rsplit(".", 1)[0] + ".*" if k.count(".") > 1 else k for k in sorted(keys))
        return ", ".join(f"{g} ({n} keys)" if g.endswith("*") else g for g, n in groups.items())
    a, b = flat(old), flat(new)
    gone, came = set(a) - set(b), set(b) - set(a)
    parts = [f"{sections(gone)} -> {sections(came)}"] if gone and came else \
        [f"dropped {', '.join(sorted(gone))} (unused)"] if gone else [f"added {sections(came)}"] if came else []
    return "; ".join(parts + [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(set(a) & set(b)) if a[k] != b[k]])


def to_object(cfg: DictConfig):
    """The dataclass instance (typed, attribute access) for a resolved config."""
    return OmegaConf.to_object(cfg)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def config_hash(cfg: DictConfig) -> str:
    """Hash of everything that defines the experiment except the seed, so seeds of one config group together."""
    data = OmegaConf.to_container(cfg, resolve=True)
    trainer = dict(data.get("trainer", {}))
    for k in ("seed", "progress", "tensorboard", "log_every", "checkpoint_every", "keep_last", "stop_at",
              "num_workers"):
        trainer.pop(k, None)
    data["trainer"] = trainer
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
