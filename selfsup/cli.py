"""`selfsup tasks | train | eval | export` — also under `torchrun --nproc_per_node=N -m selfsup train ...`.

Exit status: 0 done; 2 a user error (the message says what to fix); 75 (EX_TEMPFAIL) training stopped by
SIGTERM/SIGINT after saving a checkpoint (continue with --resume); 1 a bug (its traceback is shown).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from omegaconf import OmegaConf

from .checkpoint import STEP_DIR, list_checkpoints, resolve_checkpoint
from .config import load_saved, resolve
from .errors import RunDirError, UserError

EXIT_USER_ERROR, EXIT_STOPPED = 2, 75


def _build_task(name: str, args, run_dir: Path | None, prefer_saved: bool):
    """Task class, resolved config (saved config.yaml when resuming/evaluating a run), task instance."""
    from .task import build_task, get_task_class
    cls = get_task_class(name)
    saved = None
    if prefer_saved and run_dir is not None and (run_dir / "config.yaml").is_file():
        saved = load_saved(cls, run_dir / "config.yaml")
    cfg = resolve(cls.Config, cls.presets, preset=None if saved is not None else args.preset,
                  yaml_file=args.config, overrides=args.set, base=None if saved is None else saved.copy())
    if saved is not None:
        _say_changes(saved, cfg, run_dir / "config.yaml")
    return cls, cfg, build_task(cls, cfg)


def _say_changes(saved, cfg, source: Path) -> None:
    """Settings that differ from the saved run's, so that a resume with overrides is never silent."""
    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    old, new = flat(OmegaConf.to_container(saved)), flat(OmegaConf.to_container(cfg))
    changed = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if changed:
        print(f"[selfsup] settings changed from {source}: " + "; ".join(changed), file=sys.stderr, flush=True)


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
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a folder; choose a folder path")
    if args.resume and args.preset:
        print(f"[selfsup] --resume: the saved {run_dir / 'config.yaml'} is used; --preset is ignored", file=sys.stderr)
    _, cfg, task = _build_task(args.task, args, run_dir, prefer_saved=args.resume)
    summary = Trainer(task, cfg, run_dir, resume=args.resume).fit()
    for r in summary["results"]:
        print(f"{r.task} {r.dataset}/{r.split} {r.metric} = {r.value:.4f}")
    return EXIT_STOPPED if summary["stopped_by"] else 0


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


def check_export_target(out: Path, force: bool) -> None:
    """An export never lands inside a run's checkpoints (it would replace a checkpoint's weights), and never
    mixes with files already in a folder unless --force."""
    for folder in (out.resolve(), *out.resolve().parents):
        if folder.name == "checkpoints" and (list_checkpoints(folder) or (folder.parent / "config.yaml").is_file()) \
                or STEP_DIR.match(folder.name) and (folder / "meta.json").is_file():
            raise RunDirError(f"--out {out} is inside the run's checkpoints ({folder}): an export there would "
                              "replace checkpoint files and break --resume, eval and export; choose a folder "
                              "outside checkpoints/")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RunDirError(f"--out {out} is not empty; choose a new or empty folder, or pass --force to write "
                          "into it (files of the same name are replaced)")


def cmd_export(args) -> int:
    """The task's own export format (timm for vision encoders, transformers for BERT), written to a temporary
    folder and moved into place when complete."""
    from .harness import model_from_checkpoint
    out = Path(args.out)
    check_export_target(out, args.force)
    ckpt = resolve_checkpoint(args.checkpoint)
    _, cfg, task = _build_task(args.task, args, ckpt.parent.parent, prefer_saved=True)
    if not hasattr(task, "export"):
        raise UserError(f"task '{args.task}' has no export format")
    model = model_from_checkpoint(task, ckpt, args.ema)
    fmt = {"fmt": args.format} if args.format else {}          # else the task's default format
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        task.export(model.eval(), tmp, **fmt)
        if out.is_dir():                     # empty, or --force: replace what the export writes, keep the rest
            for item in tmp.iterdir():
                target = out / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"exported {ckpt} to {out}")
    return 0


def cmd_plugin(args) -> int:
    """Commands other packages add (`leaderboard`, `bench`, `rl-pretrain`), found through entry points so that
    this engine never imports them."""
    from importlib.metadata import entry_points
    found = {ep.name: ep for ep in entry_points(group="selfsup.commands")}
    if args.command not in found:
        raise UserError(f"the '{args.command}' command is not installed (reinstall with `pip install -e .`)")
    return found[args.command].load()(args.rest) or 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfsup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list tasks and their presets").set_defaults(fn=cmd_tasks)

    def config_args(sp):
        sp.add_argument("task", help="task name (see `selfsup tasks`)")
        sp.add_argument("--preset", help="named preset of the task, e.g. tiny")
        sp.add_argument("--config", help="YAML file merged over the preset")
        sp.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. trainer.max_steps=100 task.hidden=128; repeated --set flags "
                             "are merged in order (a later value of a key wins)")
        sp.add_argument("--run-dir", required=True,
                        help="run directory (config.yaml, metrics.jsonl, checkpoints/, results.json)")

    t = sub.add_parser("train", help="train a task (exit 75: stopped by a signal after a checkpoint; use --resume)")
    config_args(t)
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its newest intact checkpoint (with its saved config)")
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
    x.add_argument("--out", required=True, help="folder to write (new or empty; never inside a run's checkpoints/)")
    x.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
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
    except UserError as e:                    # anything else is a bug: its traceback shows, exit status 1
        if os.environ.get("SELFSUP_DEBUG"):
            raise
        print(f"selfsup: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        from .distributed import teardown
        teardown()


if __name__ == "__main__":
    sys.exit(main())
