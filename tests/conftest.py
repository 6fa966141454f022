import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfsup.config import resolve
from selfsup.task import build_task
from selfsup.trainer import Trainer

torch.set_num_threads(1)  # tests run small models; one thread each is fastest and deterministic
ROOT = Path(__file__).resolve().parent.parent


def make_cfg(task_cls, overrides=(), preset=None):
    return resolve(task_cls.Config, task_cls.presets, preset=preset, overrides=list(overrides))


def train(task_cls, run_dir, overrides=(), resume=False, task=None):
    """Train in-process; returns the Trainer's summary. Progress bars and TensorBoard off for speed."""
    base = ["trainer.progress=false", "trainer.tensorboard=false"]
    cfg = make_cfg(task_cls, base + list(overrides))
    task = task or build_task(task_cls, cfg)          # seeded first, as the CLI builds it
    return Trainer(task, cfg, run_dir, resume=resume).fit()


def run_cli(*args, env=None, timeout=300, torchrun=0):
    """Run `selfsup ...` (or under torchrun) in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "selfsup", *args]
    else:
        cmd = [sys.executable, "-m", "selfsup", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"


# ---------------------------------------------------------------------------------------------- text tasks

# a tiny encoder and evaluation for the `bert` task (any objective)
TINY_TEXT = ["task.model.hidden_size=32", "task.model.num_layers=1", "task.model.num_heads=2",
             "task.model.intermediate_size=64", "task.model.max_position=64", "task.max_len=32",
             "task.max_predictions=5", "task.vocab_size=200", "task.dupe_factor=2", "task.eval.pppl_sentences=3",
             "task.eval.probe_epochs=5", "task.corpus.valid_fraction=0.2", "trainer.batch_size=16",
             "trainer.log_every=2", "trainer.lr=1e-3"]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """A BERT-format corpus: 40 documents of four sentences, each about one of four animals."""
    f = tmp_path_factory.mktemp("corpus") / "c.txt"
    lines = []
    for i in range(40):
        lines += [f"Document {i} sentence {j} talks about the {['cat', 'dog', 'bird', 'fish'][i % 4]} near the river."
                  for j in range(4)] + [""]
    f.write_text("\n".join(lines))
    return f


@pytest.fixture(scope="module")
def topic_folder(tmp_path_factory):
    """Four text files (topic = file name), each fifteen paragraphs in the topic's own words."""
    root = tmp_path_factory.mktemp("topics")
    words = {"cats": "whiskers purr mouse milk", "ships": "sail harbour anchor mast", "stars": "orbit comet galaxy "
             "telescope", "bread": "flour oven yeast crust"}
    for topic, w in words.items():
        w = w.split()
        paragraphs = [f"The {w[i % 4]} and the {w[(i + 1) % 4]} were here. Then a {w[(i + 2) % 4]} came by the "
                      f"{w[(i + 3) % 4]} again." for i in range(15)]
        (root / f"{topic}.txt").write_text("\n\n".join(paragraphs) + "\n")
    return root
