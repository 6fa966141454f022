"""The `zoo` suite at tiny scale with encoders saved locally in their libraries' own formats (tests/tiny_encoders.py):
each spec probed through `selfsup probe` beside our own random-weights run, read into the same table; the raw-pixel
row and the captioning / PPO columns for specs run once the encoder-spec integration provides them (until then those
tests skip, saying so). The machinery, not a claim about the models."""
from dataclasses import replace

import pytest

from benchmarks.board import collect
from benchmarks.markdown import summary_md
from benchmarks.matrix import Budget, Suite, SuiteError, Train
from benchmarks.plan import plan
from benchmarks.runner import run_local
from benchmarks.suites import make
from benchmarks.suites.vision import PIXELS
from selfsup.results import read_results

import tiny_encoders as tiny
from conftest import TINY_TEXT

pytestmark = pytest.mark.slow
QUIET = ("trainer.progress=false", "trainer.tensorboard=false")
TINY_SCENES = ("task.data.num_train=120", "task.data.num_test=60", "task.probe.epochs=5", "trainer.batch_size=16")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _zoo(specs, rows, columns) -> Suite:
    suite = make("zoo", None, specs)
    return Suite("zoo", tuple(r for r in suite.representations if r.name in rows or r.spec in specs),
                 tuple(e for e in suite.evaluations if e.name in columns), seeds=1, shared=suite.shared)


def _run(suite, out, scenes: bool = True):
    p = plan(suite, out, extra=QUIET + (TINY_SCENES if scenes else ()))
    outcomes = run_local(p, log=lambda *_: None)
    failed = {k: o.error for k, o in outcomes.items() if o.state != "complete"}
    assert not failed, failed
    return p, collect(p)


def test_zoo_probes_released_encoders_beside_ours(tmp_path):
    specs = (f"timm:{tiny.timm_folder(tmp_path / 'timm')}", f"hf:{tiny.hf_vision(tmp_path / 'hf', 'vit')}")
    p, board = _run(_zoo(specs, {"random-vit"}, {"linear", "knn"}), tmp_path / "runs")
    names = {r.spec: r.name for r in p.suite.representations if r.spec}
    for spec, name in names.items():
        assert p.cells[(name, "linear")] == p.cells[(name, "knn")] == [f"{name}-scenes-s0"]   # one probe run
        results = read_results(p.dir(f"{name}-scenes-s0") / "results.json")
        assert {r.extra["encoder"] for r in results} == {spec} and {r.task for r in results} == {"probe"}
        assert {r.dataset for r in results} == {"scenes-shape", "scenes-count", "scenes-colour"}
    for rep in ("random-vit", *names.values()):     # every row has its numbers, in the same table
        for col in ("linear", "knn"):
            cell = board.cells[(rep, col)]
            assert len(cell.values) == 1 and 0 <= cell.values[0] <= 1, (rep, col)
    md = summary_md(board)
    for spec in specs:
        assert f"| {spec} | spec {spec} |" in md
    assert "Not complete" not in md and not board.problems


def test_pixels_row_in_the_probe_columns(tmp_path):
    suite = make("vision", None)
    s = Suite("v", (PIXELS,), tuple(e for e in suite.evaluations if e.name in ("linear", "knn")), seeds=1)
    p, board = _run(s, tmp_path / "runs")
    assert p.cells[("pixels", "linear")] == ["pixels-scenes-s0"]
    assert len(board.cells[("pixels", "knn")].values) == 1


def test_specs_as_captioning_towers_and_frozen_policy_encoders(tmp_path, corpus_file):
    spec = f"timm:{tiny.timm_folder(tmp_path / 'timm')}"
    suite = _zoo((spec,), {"bert"}, {"caption", "ppo"})
    name = next(r.name for r in suite.representations if r.spec == spec)
    p = plan(suite, tmp_path / "plan")
    assert p.cells[(name, "caption")] == [f"caption--{name}-s0"] and len(p.cells[(name, "ppo")]) == 5
    # the zoo's own columns at a few steps each, its decoder a BERT pretrained for two steps on a small corpus
    shrink = {"caption": ("task.data.num_train=64", "task.data.num_eval=16", "trainer.batch_size=8"),
              "ppo": ("task.eval_episodes=2",)}
    cols = tuple(replace(e, seeds=1, run=replace(e.run, overrides=e.run.overrides + shrink[e.name],
                                                 budget=Budget(steps=16 if e.name == "ppo" else 2)))
                 for e in suite.evaluations)
    bert = Train("bert", "tiny", (*TINY_TEXT, "task.corpus.format=bert", f"task.corpus.path={corpus_file}"),
                 Budget(steps=2))
    reps = tuple(replace(r, pretrain={"stdlib": bert}) if r.name == "bert" else r for r in suite.representations)
    _, board = _run(Suite("zoo", reps, cols, seeds=1, shared=suite.shared), tmp_path / "runs", scenes=False)
    assert board.cells[(name, "caption")].values and board.cells[(name, "ppo")].values


def test_text_specs_finetune_on_sst2_beside_ours_and_bag_of_words(tmp_path):
    """`--specs text:SPEC`: a transformers text encoder in the SST-2 column (glue from the spec itself), in the same
    table as our text rows and the bag-of-words baseline; image specs keep the image columns."""
    data = tmp_path / "data"
    (data / "glue" / "SST-2").mkdir(parents=True)
    lines = ["sentence\tlabel"] + [f"a {w} film\t{int(w in ('good', 'great'))}" for w in
                                   ["good", "bad", "great", "awful"] * 6]
    for split in ("train", "dev"):
        (data / "glue" / "SST-2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    text = f"hf:{tiny.hf_text(tmp_path / 'electra', 'electra')}"
    image = f"timm:{tiny.timm_folder(tmp_path / 'timm')}"
    suite = make("zoo", data, (f"text:{text}", image))
    kinds = {r.spec: r.kind for r in suite.representations if r.spec}
    assert kinds == {text: "text", image: "image", "pixels": "image"}
    assert {"electra", "random-bert", "bow"} <= {r.name for r in suite.representations}
    name = next(r.name for r in suite.representations if r.spec == text)
    small = Suite("zoo", tuple(r for r in suite.representations if r.spec == text),
                  tuple(e for e in suite.evaluations if e.name == "sst2"), seeds=1)
    p, board = _run(small, tmp_path / "runs", scenes=False)
    job = p.jobs[p.cells[(name, "sst2")][0]]
    assert f"task.init={text}" in job.argv and job.deps == ()             # the spec itself: nothing to pretrain
    assert len(board.cells[(name, "sst2")].values) == 1
    with pytest.raises(SuiteError, match="give --data with glue/SST-2"):
        make("zoo", None, (f"text:{text}",))
