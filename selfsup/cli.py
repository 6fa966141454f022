"""`selfsup tasks | train | eval` — also under `torchrun --nproc_per_node=N -m selfsup train ...`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .checkpoint import CheckpointError, resolve_checkpoint
from .config import ConfigError, load_saved, resolve, to_object
from .results import ResultsFileError
from .trainer import NonFiniteError


def _build_task(name: str, args, run_dir: Path | None, prefer_saved: bool):
    """Task class, resolved config (saved config.yaml when resuming/evaluating a run), task instance."""
    from .task import get_task_class
    cls = get_task_class(name)
    saved = None
    if prefer_saved and run_dir is not None and (run_dir / "config.yaml").is_file():
        saved = load_saved(cls.Config, run_dir / "config.yaml")
    cfg = resolve(cls.Config, cls.presets, preset=None if saved is not None else args.preset,
                  yaml_file=args.config, overrides=args.set, base=saved)
    return cls, cfg, cls(to_object(cfg).task)


def cmd_tasks(args) -> int:
    from .task import available_tasks
    for name, ep in sorted(available_tasks().items()):
        try:
            cls = ep.load()
            presets = ", ".join(cls.presets)
        except Exception as e:  # a task whose package fails to import should not hide the others
            presets = f"(cannot load: {type(e).__name__}: {e})"
        print(f"{name:14s} presets: {presets}")
    return 0


def cmd_train(args) -> int:
    from .trainer import Trainer
    run_dir = Path(args.run_dir)
    if args.resume and args.preset:
        print(f"[selfsup] --resume: the saved {run_dir / 'config.yaml'} is used; --preset is ignored", file=sys.stderr)
    _, cfg, task = _build_task(args.task, args, run_dir, prefer_saved=args.resume)
    summary = Trainer(task, cfg, run_dir, resume=args.resume).fit()
    if summary["results"]:
        for r in summary["results"]:
            print(f"{r.task} {r.dataset}/{r.split} {r.metric} = {r.value:.4f}")
    return 0


def cmd_eval(args) -> int:
    from .distributed import pick_device
    from .harness import evaluate_checkpoint
    ckpt = resolve_checkpoint(args.checkpoint)
    source_run = ckpt.parent.parent          # run_dir/checkpoints/step_X
    _, cfg, task = _build_task(args.task, args, source_run, prefer_saved=True)
    device = pick_device(args.device, 0)
    results = evaluate_checkpoint(task, cfg, ckpt, Path(args.run_dir), device, use_ema=args.ema)
    for r in results:
        print(f"{r.task} {r.dataset}/{r.split} {r.metric} = {r.value:.4f}")
    print(f"results written to {Path(args.run_dir) / 'results.json'}")
    return 0


def cmd_export(args) -> int:
    """The task's own export format (timm for vision encoders, transformers for BERT)."""
    from .harness import model_from_checkpoint
    ckpt = resolve_checkpoint(args.checkpoint)
    _, cfg, task = _build_task(args.task, args, ckpt.parent.parent, prefer_saved=True)
    if not hasattr(task, "export"):
        raise ValueError(f"task '{args.task}' has no export format")
    model = model_from_checkpoint(task, ckpt, args.ema)
    fmt = {"fmt": args.format} if args.format else {}          # else the task's default format
    print(f"exported {ckpt} to {task.export(model.eval(), Path(args.out), **fmt)}")
    return 0


def cmd_plugin(args) -> int:
    """Commands other packages add (`leaderboard`, `bench`, `rl-pretrain`), found through entry points so that
    this engine never imports them."""
    from importlib.metadata import entry_points
    found = {ep.name: ep for ep in entry_points(group="selfsup.commands")}
    if args.command not in found:
        raise ValueError(f"the '{args.command}' command is not installed (reinstall with `pip install -e .`)")
    return found[args.command].load()(args.rest) or 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfsup", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks and their presets").set_defaults(fn=cmd_tasks)

    def config_args(sp):
        sp.add_argument("task", help="task name (see `selfsup tasks`)")
        sp.add_argument("--preset", help="named preset of the task, e.g. tiny")
        sp.add_argument("--config", help="YAML file merged over the preset")
        sp.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. trainer.max_steps=100 task.hidden=128")
        sp.add_argument("--run-dir", required=True,
                        help="run directory (config.yaml, metrics.jsonl, checkpoints/, results.json)")

    t = sub.add_parser("train", help="train a task")
    config_args(t)
    t.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint and write results.json")
    config_args(e)
    e.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (its latest checkpoint)")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    e.set_defaults(fn=cmd_eval)

    x = sub.add_parser("export", help="write a checkpoint in the task's interchange format (timm, transformers)")
    x.add_argument("task")
    x.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (its latest checkpoint)")
    x.add_argument("--out", required=True, help="folder to write")
    x.add_argument("--ema", action="store_true", help="export the EMA weights")
    x.add_argument("--format", default="", help="the task's export formats, e.g. timm (default) | hf for mae/simmim")
    x.set_defaults(fn=cmd_export, preset=None, config=None, set=[])

    from importlib.metadata import entry_points
    for ep in sorted(entry_points(group="selfsup.commands"), key=lambda ep: ep.name):
        c = sub.add_parser(ep.name, help=f"{ep.value.split(':')[0]} (see `selfsup {ep.name} --help`)", add_help=False)
        c.add_argument("rest", nargs=argparse.REMAINDER)
        c.set_defaults(fn=cmd_plugin)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, unknown = p.parse_known_args(argv)
    if args.fn is cmd_plugin:
        args.rest = unknown + args.rest       # everything after the command belongs to it, --help included
    elif unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.fn(args)
    except (ConfigError, CheckpointError, NonFiniteError, ResultsFileError, KeyError, FileNotFoundError,
            ValueError) as e:
        if os.environ.get("SELFSUP_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"selfsup: error: {msg}", file=sys.stderr)
        return 2
    finally:
        from .distributed import teardown
        teardown()


if __name__ == "__main__":
    sys.exit(main())
