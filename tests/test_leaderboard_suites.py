"""The leaderboard's suites as plans, without training: the `vision` suite keeps the jobs its evidence run is making,
the suites that share one folder (`vision`, `language`, `clip`, `rl`, their union `standard`, `zoo`) never give one
job id two commands, equal training time sets each method's steps, rows that read another row's runs (bag-of-words,
chance), columns defined only for some rows ("–"), evaluations along a pretraining's checkpoints (SST-2 against
pretraining minutes), `quick` as the matrix at tiny scale, and quick verdicts read from a leaderboard section."""
import json
import shutil
from dataclasses import replace

import pytest

from benchmarks import matrix
from benchmarks.board import collect
from benchmarks.keep import keep
from benchmarks.leaderboard import main, publish
from benchmarks.markdown import summary_md
from benchmarks.matrix import RANDOM, Budget, Evaluation, Metric, Representation, Suite, SuiteError, Train
from benchmarks.plan import only_rows, only_seeds, plan
from benchmarks.plots import figures
from benchmarks.runner import job_state
from benchmarks.suites import SUITES, make, quick
from benchmarks.suites.language import OBJECTIVES, TEXT_SPEED
from benchmarks.suites.vision import MIM_SPEED
from benchmarks.tables import headline
from benchmarks.throughput import write_section
from benchmarks.verdicts import section_key
from selfsup.results import Result, write_results
from selfsup.runs import write_status


@pytest.fixture
def data(tmp_path):
    """A ../shared/data look-alike: the folders the suites test for (nothing is read while planning)."""
    root = tmp_path / "data"
    (root / "cifar10-subset" / "val").mkdir(parents=True)
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "input.txt").write_text("First Citizen:\nBefore we proceed any further.\n")
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    return root


def _overrides(job) -> str:
    return " ".join(job.argv[job.argv.index("--set") + 1:]) if "--set" in job.argv else ""


# ------------------------------------------------------------------------------------------------ vision


def test_vision_keeps_the_jobs_its_evidence_run_is_making(tmp_path, data):
    """The `vision` evidence folders: these ids with these commands (SimMIM and data2vec at the 2026-11-29 speed
    ratios), new rows beside."""
    out = tmp_path / "runs"
    p = plan(make("vision", data), out)
    cifar = f"task.data.source=imagefolder task.data.path={data / 'cifar10-subset'}"
    random = "trainer.max_steps=1 trainer.lr=0.0 trainer.warmup_steps=0"
    expected = {   # seed 0, after `--set trainer.seed=0`
        "mae-cifar10-s0": f"trainer.max_steps=2000 {cifar} trainer.eval_every=1000",
        "mae-scenes-s0": "trainer.max_steps=1000 trainer.eval_every=500",
        "simmim-cifar10-s0": f"trainer.max_steps=778 {cifar} trainer.eval_every=389",
        "simmim-scenes-s0": "trainer.max_steps=389 trainer.eval_every=194",
        "data2vec-cifar10-s0": f"trainer.max_steps=378 {cifar} trainer.eval_every=189",
        "data2vec-scenes-s0": "trainer.max_steps=189 trainer.eval_every=94",
        "random-vit-cifar10-s0": f"{random} {cifar}",
        "random-vit-scenes-s0": random,
    }
    for rep in ("mae", "simmim", "data2vec", "random-vit"):
        expected[f"cifar-finetune--{rep}-s0"] = f"trainer.max_steps=300 task.init={out / (rep + '-cifar10-s0')} {cifar}"
        expected[f"finetune--{rep}-s0"] = f"trainer.max_steps=300 task.init={out / (rep + '-scenes-s0')} " \
                                          "task.data.label=shape"
    for job_id, overrides in expected.items():
        job = p.jobs[job_id]
        task = "vit-finetune" if "finetune" in job_id else job_id.split("-")[0].replace("random", "mae")
        assert job.argv[:5] == ("train", task, "--preset", "tiny", "--run-dir") and job.argv[5] == str(out / job_id)
        assert _overrides(job) == f"trainer.seed=0 {overrides}", job_id
        for seed in (1, 2):
            again = p.jobs[job_id.replace("-s0", f"-s{seed}")]
            assert _overrides(again) == _overrides(job).replace("-s0", f"-s{seed}").replace(
                "trainer.seed=0", f"trainer.seed={seed}")
    # the new rows: raw pixels through `selfsup probe` (one run per domain, read by its probe columns), MAE at 3x
    for domain, source in (("scenes", "scenes"), ("cifar10", f"imagefolder:{data / 'cifar10-subset'}")):
        job = p.jobs[f"pixels-{domain}-s1"]
        assert job.argv == ("probe", "--encoder", "pixels", "--data", source, "--seed", "1", "--out",
                            str(out / f"pixels-{domain}-s1"), "--set", "task.probe.epochs=60", "image_size=32")
    assert p.cells[("pixels", "linear")] == p.cells[("pixels", "knn")] == p.cells[("pixels", "linear-count")] == \
        [f"pixels-scenes-s{s}" for s in range(3)]
    assert ("pixels", "finetune") not in p.cells and ("pixels", "img-per-s") not in p.cells
    assert _overrides(p.jobs["mae-3x-cifar10-s2"]) == f"trainer.seed=2 trainer.max_steps=6000 {cifar} " \
                                                     "trainer.eval_every=2000"
    assert {e for r, e in p.cells if r == "mae-3x"} == {"cifar-linear", "cifar-knn"}
    assert len(p.jobs) == 16 * 3 + 3 * 3 and p.suite.seeds == 3


def test_equal_training_time_sets_the_steps(tmp_path):
    """Each method's steps are the base budget over its measured time per step, in the commands too."""
    vision, language = plan(make("vision", None), tmp_path, seeds=1), plan(make("language", None), tmp_path, seeds=1)
    for method, ratio in MIM_SPEED.items():
        assert f"trainer.max_steps={round(1000 / ratio)}" in vision.jobs[f"{method}-scenes-s0"].argv
    for objective, ratio in TEXT_SPEED.items():
        job = language.jobs[f"{OBJECTIVES[objective][0]}-stdlib-s0"]
        assert f"trainer.max_steps={round(1000 / ratio)}" in job.argv and f"task.objective={objective}" in job.argv
    assert TEXT_SPEED["mlm+nsp"] == MIM_SPEED["mae"] == 1.0
    # quick: the same ratios at its smaller budgets
    q = quick()
    assert q.rep("simmim").pretrain["scenes"].budget.steps == round(
        q.rep("mae").pretrain["scenes"].budget.steps / MIM_SPEED["simmim"])
    assert q.rep("electra").pretrain["stdlib"].budget.steps == round(
        q.rep("bert").pretrain["stdlib"].budget.steps / TEXT_SPEED["electra"])


# ------------------------------------------------------------------------------------------------ one folder


def test_suites_sharing_a_folder_never_give_an_id_two_commands(tmp_path, data):
    out, seen = tmp_path / "runs", {}
    plans = {}
    for name in ("vision", "language", "clip", "rl", "standard", "zoo"):
        suite = make(name, data, ("timm:vit_tiny_patch16_224",) if name == "zoo" else ())
        plans[name] = p = plan(suite, out)
        for job in p.jobs.values():
            assert seen.setdefault(job.id, job.argv) == job.argv, f"{name}: {job.id}"
    standard = plans["standard"]
    for name in ("vision", "language", "clip", "rl"):          # the union: exactly its parts' jobs and cells
        assert set(plans[name].jobs) <= set(standard.jobs)
        assert plans[name].cells.items() <= standard.cells.items()
    assert set(standard.jobs) == set().union(*(plans[n].jobs for n in ("vision", "language", "clip", "rl")))
    assert len(standard.cells) == len(set().union(*(plans[n].cells for n in ("vision", "language", "clip", "rl"))))
    assert len(standard.cells[("mae", "ppo")]) == 5 and len(standard.cells[("mae", "linear")]) == 3   # RL: 5 seeds


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_lists_each_job_after_what_it_needs(name, tmp_path, data):
    """The local runner goes down the list: CLIP's pretraining needs our BERT's export, a later phase than its own
    (run in phase order, clip-scenes-s1 started before bert-stdlib-s1/export existed and failed)."""
    specs = ("timm:vit_tiny_patch16_224", "text:hf:some/bert") if name == "zoo" else ()
    p = plan(make(name, data, specs), tmp_path / "runs", seeds=3)
    position = {job_id: i for i, job_id in enumerate(p.jobs)}
    late = [(job.id, d) for job in p.jobs.values() for d in job.deps if position[d] > position[job.id]]
    assert not late, late[:3]
    seeds = [job.seed for job in p.jobs.values()]
    assert seeds == sorted(seeds)                          # still seed by seed: a stopped suite has its first seeds


def test_union_refuses_one_run_made_two_ways():
    a = Suite("a", (Representation("m", "image", {"d": Train("mae", "tiny", (), Budget(steps=10))}),), ())
    b = Suite("b", (Representation("m", "image", {"d": Train("mae", "tiny", (), Budget(steps=20))}),), ())
    with pytest.raises(SuiteError, match="m is pretrained on d in two ways"):
        matrix.union("u", [a, b])
    ev = Evaluation("e", "image", "d", Metric("x"))
    with pytest.raises(SuiteError, match="evaluation e is defined differently"):
        matrix.union("u", [Suite("a", (), (ev,)), Suite("b", (), (Evaluation("e", "image", "d", Metric("y")),))])
    merged = matrix.union("u", [a, Suite("c", (Representation("m", "image", {"f": Train("mae", "tiny", ())}),), ())])
    assert set(merged.rep("m").pretrain) == {"d", "f"}


# ------------------------------------------------------------------------------------------------ language


def test_language_plan_finetunes_every_export_and_along_the_stdlib_pretrainings(tmp_path, data):
    out = tmp_path / "runs"
    p = plan(make("language", data), out, seeds=1)
    rows = {r.name for r in p.suite.representations}
    assert rows == {"bert", "bert-sop", "bert-mlm", "electra", "data2vec-text", "random-bert", "random-electra", "bow"}
    shakespeare = p.jobs["electra-shakespeare-s0"]
    assert f"task.corpus.path={data / 'tinyshakespeare' / 'input.txt'}" in shakespeare.argv
    assert "task.corpus.format=text" in shakespeare.argv and "task.objective=electra" in shakespeare.argv
    glue = p.jobs["sst2-shakespeare--electra-s0"]
    assert glue.deps == ("electra-shakespeare-s0/export",) and \
        f"task.init={out / 'electra-shakespeare-s0' / 'export'}" in glue.argv
    assert "task.objective=electra" in p.jobs["random-electra-stdlib-s0"].argv
    # SST-2 against pretraining minutes: exports of the checkpoints at 1/3 and 2/3 of each budget, then glue
    third = p.suite.rep("electra").pretrain["stdlib"].budget.steps // 3
    pre = p.jobs["electra-stdlib-s0"]
    assert {f"trainer.checkpoint_every={third}", "trainer.keep_last=0"} <= set(pre.argv)
    assert sorted(p.along[("electra", "sst2")]) == [third, 2 * third]
    export = p.jobs[f"electra-stdlib-s0/export-step{third}"]
    assert export.argv[:4] == ("export", "bert", "--checkpoint", str(out / "electra-stdlib-s0" / "checkpoints" /
                                                                      f"step_{third:08d}"))
    along = p.jobs[f"sst2--electra-s0-step{third}"]
    assert along.deps == (f"electra-stdlib-s0/export-step{third}",)
    assert ("random-bert", "sst2") not in p.along and ("electra", "sst2-shakespeare") not in p.along
    # the bag-of-words row reads the random BERT's glue runs; MLM accuracy is a column defined where there is a head
    assert p.cells[("bow", "sst2")] == p.cells[("random-bert", "sst2")] and ("bow", "topic") not in p.cells
    assert p.suite.rep("bow").metrics["sst2"].metric == "bow_logreg_accuracy"
    assert next(e for e in p.suite.evaluations if e.name == "mlm").where_defined
    # without ../shared/data: the stdlib corpus alone, no SST-2, no checkpoints kept along the way
    bare = plan(make("language", tmp_path / "nowhere"), tmp_path / "bare", seeds=1)
    assert {e.name for e in bare.suite.evaluations} == {"topic", "mlm", "tok-per-s"}
    assert not bare.along and "trainer.keep_last=0" not in bare.jobs["bert-stdlib-s0"].argv


def test_along_needs_the_checkpoints_kept(tmp_path):
    budget = Budget(steps=90)
    ev = Evaluation("down", "text", "t", Metric("acc"), Train("glue", "tiny", ("task.init={export}",)), along=3)
    kept = Representation("r", "text", {"t": Train("bert", "tiny", matrix.checkpoints_along(budget, 3), budget)})
    p = plan(Suite("s", (kept,), (ev,)), tmp_path)
    assert sorted(p.along[("r", "down")]) == [30, 60]
    bare = Representation("r", "text", {"t": Train("bert", "tiny", (), budget)})
    with pytest.raises(SuiteError, match=r"checkpoints at steps \[30, 60\]: give that pretraining checkpoints_along"):
        plan(Suite("s", (bare,), (ev,)), tmp_path)


# ------------------------------------------------------------------------------------------------ clip


def test_clip_plan_trains_from_our_runs_and_captions_from_each_tower(tmp_path, data):
    out = tmp_path / "runs"
    p = plan(make("clip", data), out, seeds=2)
    clip = p.jobs["clip-scenes-s1"]
    assert set(clip.deps) == {"mae-scenes-s1", "bert-stdlib-s1/export"}
    assert f"task.vision_init={out / 'mae-scenes-s1'}" in clip.argv
    assert f"task.text_init={out / 'bert-stdlib-s1' / 'export'}" in clip.argv
    assert f"task.eval.zeroshot_folder={data / 'cifar10-subset' / 'val'}" in clip.argv
    rand = p.jobs["clip-random-scenes-s1"]
    assert "task.text_pretrained=false" in rand.argv and not any(a.startswith("task.vision_init") for a in rand.argv)
    assert clip.argv[clip.argv.index("--set") + 2] == rand.argv[rand.argv.index("--set") + 2] == "trainer.max_steps=600"
    # the MAE, random ViT and BERT are the vision and language suites' own runs
    vision, language = plan(make("vision", data), out, seeds=2), plan(make("language", data), out, seeds=2)
    for job_id in ("mae-scenes-s1", "random-vit-scenes-s0"):
        assert p.jobs[job_id].argv == vision.jobs[job_id].argv
    assert p.jobs["bert-stdlib-s1"].argv == language.jobs["bert-stdlib-s1"].argv
    caption = {r for r, e in p.cells if e == "caption"}
    assert caption == {"clip", "clip-random", "mae", "random-vit"}
    assert f"task.vision_init={out / 'clip-scenes-s0'}" in p.jobs["caption--clip-s0"].argv
    # retrieval and zero-shot read the clip runs only; the chance row reads the random towers' runs
    assert {r for r, e in p.cells if e == "t2i-heldout"} == {"clip", "clip-random", "chance"}
    assert p.cells[("chance", "zs-cifar")] == p.cells[("clip-random", "zs-cifar")]
    assert p.suite.rep("chance").metrics["i2t"].metric == "text_retrieval_recall@1_chance"
    assert p.suite.rep("chance").metrics["zs-shape"].metric == "zeroshot_majority_baseline"
    assert ("chance", "caption") not in p.cells and ("bert", "caption") not in p.cells


# ------------------------------------------------------------------------------------------------ zoo


def test_zoo_plan_probes_captions_and_drives_a_policy_with_each_spec(tmp_path, data, capsys):
    out = tmp_path / "runs"
    specs = ("timm:vit_small_patch14_dinov2.lvd142m", "hf:facebook/vit-mae-base", "hf:facebook/vit-mae-base")
    p = plan(make("zoo", data, specs), out, seeds=1)
    names = [r.name for r in p.suite.representations if r.spec and r.spec != "pixels"]
    assert names == ["timm-vit-small-patch14-dinov2-lvd142m", "hf-facebook-vit-mae-base",
                     "hf-facebook-vit-mae-base-2"]
    timm = names[0]
    assert p.jobs[f"{timm}-scenes-s0"].argv[:5] == ("probe", "--encoder", specs[0], "--data", "scenes")
    assert p.cells[(timm, "linear")] == p.cells[(timm, "knn")] == [f"{timm}-scenes-s0"]
    assert f"task.vision_init={specs[0]}" in p.jobs[f"caption--{timm}-s0"].argv
    assert f"task.encoder.init={specs[0]}" in p.jobs[f"ppo--{timm}-s0"].argv
    assert len(p.cells[(timm, "ppo")]) == 1           # --seeds 1 here; the suite's own default for PPO is 5
    assert len(plan(make("zoo", data, specs[:1]), out).cells[(timm, "ppo")]) == 5
    # ours beside them: the vision and rl suites' runs, pixels in the probe columns only, a scratch CNN in PPO
    assert p.cells[("mae", "ppo")] == ["ppo--mae-s0"] and p.jobs["ppo--mae-s0"].deps == ("mae-minigrid-s0",)
    assert {e for r, e in p.cells if r == "pixels"} == {"linear", "knn", "linear-count"}
    assert {e for r, e in p.cells if r == "scratch-cnn"} == {"ppo"}
    with pytest.raises(SuiteError, match="--specs SPEC"):
        make("zoo", data)
    with pytest.raises(SuiteError, match="--specs names the encoders of the zoo suite"):
        make("vision", data, specs)
    # the CLI remembers the specs with the folder
    assert main(["plan", "--suite", "zoo", "--out", str(out), "--specs", specs[0], "--data", str(data)]) == 0
    assert f"probe --encoder {specs[0]}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ quick


def test_quick_is_the_matrix_at_tiny_scale(tmp_path):
    q = quick()
    p = plan(q, tmp_path)
    image = [r.name for r in q.representations if r.kind == "image" and r.pretrain]
    text = [r.name for r in q.representations if r.kind == "text"]
    assert image == ["mae", "simmim", "data2vec", "random-vit"] and text == ["bert", "electra", "random-bert"]
    cols = {e.name for e in q.evaluations}
    assert {"linear", "knn", "caption", "ppo", "topic", "mlm"} <= cols and q.seeds == 1
    for method in ("mae", "simmim", "data2vec", "random-vit", "scratch-cnn"):
        assert p.cells[(method, "ppo")] == [f"ppo--{method}-s0"]
    for method in ("simmim", "data2vec"):          # each method's own in-domain pretraining (in_domain_vit)
        assert "task.data.source=folder" in p.jobs[f"{method}-minigrid-s0"].argv
        assert p.jobs[f"{method}-minigrid-s0"].argv[1] == method
    assert set(p.jobs["caption--data2vec-s0"].deps) == {"data2vec-scenes-s0", "bert-stdlib-s0/export"}
    # the verdicts point at the sections the evidence suites write, through the one function that names them
    sections = {e.name: e.evidence.section for e in q.evaluations if e.evidence}
    assert sections == {"linear": section_key("vision"), "knn": section_key("vision"), "caption": section_key("clip"),
                        "topic": section_key("language"), "mlm": section_key("language"), "ppo": "leaderboard-rl"}
    # and each such column has the title of the evidence suite's column it is compared with
    for name, suite in (("linear", "vision"), ("knn", "vision"), ("caption", "clip"), ("topic", "language"),
                        ("mlm", "language")):
        theirs = next(e for e in SUITES[suite](None).evaluations if e.name == name)
        assert theirs.title == next(e for e in q.evaluations if e.name == name).title
    assert all("minutes" not in str(j.argv) for j in p.jobs.values())


# ------------------------------------------------------------------------------------------------ tables


def _result(metric: str, value: float, dataset: str, split: str, step: int = 10, **kw) -> Result:
    return Result(task="t", dataset=dataset, split=split, metric=metric, value=value, seed=0, config_hash="h",
                  code_version="abc", hardware="cpu", wall_time_s=1.0, step=step, **kw)


def _text_suite(**kw) -> Suite:
    budget = Budget(steps=30)
    pre = lambda obj, b: {"c": Train("bert", "tiny", (f"task.objective={obj}",)  # noqa: E731
                                     + (matrix.checkpoints_along(b, 3) if b != RANDOM else ()), b)}
    reps = (Representation("bert", "text", pre("mlm+nsp", budget), label="BERT"),
            Representation("d2v", "text", pre("data2vec", budget), label="data2vec"),
            Representation("rand", "text", pre("mlm+nsp", RANDOM), label="random", baseline=True),
            Representation("bow", "text", label="bag of words", baseline=True, reads="rand",
                           metrics={"sst": Metric("bow_acc", "glue", "dev")}))
    evs = (Evaluation("mlm", "text", "c", Metric("mlm_accuracy", "corpus", "valid"), label="MLM", where_defined=True),
           Evaluation("probe", "text", "c", Metric("probe", "corpus", "test"), label="probe"),
           Evaluation("sst", "text", "c", Metric("acc", "glue", "dev"), Train("glue", "tiny", ("task.init={export}",)),
                      label="SST", along=3))
    return Suite("t", reps, evs, seeds=kw.pop("seeds", 2), **kw)


def _complete(p, job_id, results):
    write_results(p.dir(job_id) / "results.json", results)
    write_status(p.dir(job_id), "complete", results=True)


def test_undefined_cells_read_as_a_dash_and_baselines_read_from_other_runs(tmp_path):
    p = plan(_text_suite(), tmp_path)
    for seed in (0, 1):
        _complete(p, f"bert-c-s{seed}", [_result("mlm_accuracy", 0.3 + seed / 100, "corpus", "valid"),
                                         _result("probe", 0.6, "corpus", "test")])
        _complete(p, f"d2v-c-s{seed}", [_result("probe", 0.7, "corpus", "test")])          # no MLM head
        _complete(p, f"rand-c-s{seed}", [_result("mlm_accuracy", 0.01, "corpus", "valid"),
                                         _result("probe", 0.5, "corpus", "test")])
        _complete(p, f"sst--rand-s{seed}", [_result("acc", 0.55, "glue", "dev"),
                                            _result("bow_acc", 0.8, "glue", "dev")])
    board = collect(p)
    assert board.cells[("d2v", "mlm")].undefined and not board.cells[("d2v", "mlm")].values
    assert not board.problems                          # "–" is no problem
    md = summary_md(board)
    d2v = next(line for line in md.splitlines() if line.startswith("| data2vec |"))
    assert d2v.split(" | ")[2].startswith("–") and "0.700" in d2v
    # ranked over the columns it has: "–" is no rank
    assert "(1 col.)" in d2v
    bow = next(line for line in md.splitlines() if line.startswith("| bag of words |"))
    assert "0.800 (same at all 2 seeds)" in bow and "±" not in bow and bow.count("·") == 2
    assert board.cells[("bow", "sst")].jobs == board.cells[("rand", "sst")].jobs
    # a column that every row defines still reports a missing metric as a problem
    (p.dir("bert-c-s1") / "results.json").unlink()
    _complete(p, "bert-c-s1", [_result("mlm_accuracy", 0.31, "corpus", "valid")])
    board = collect(p)
    assert board.cells[("bert", "probe")].missing == {"bert-c-s1": "no value"}
    assert any("has no corpus/test/probe" in x for x in board.problems)


def test_sst2_against_pretraining_minutes_from_the_checkpoints(tmp_path):
    p = plan(_text_suite(seeds=1), tmp_path)
    assert sorted(p.along[("bert", "sst")]) == [10, 20]
    run = p.dir("bert-c-s0")
    _complete(p, "bert-c-s0", [_result("probe", 0.6, "corpus", "test", step=30, train_seconds=90.0)])
    for step, seconds, acc in ((10, 30.0, 0.6), (20, 60.0, 0.65)):
        (run / "checkpoints" / f"step_{step:08d}").mkdir(parents=True)
        (run / "checkpoints" / f"step_{step:08d}" / "meta.json").write_text(json.dumps({"train_seconds": seconds}))
        _complete(p, f"sst--bert-s0-step{step}", [_result("acc", acc, "glue", "dev")])
    _complete(p, "sst--bert-s0", [_result("acc", 0.7, "glue", "dev")])
    board = collect(p)
    assert board.cells[("bert", "sst")].values == [0.7]
    assert board.cells[("bert", "sst")].curves == [[(10, 30.0, 0.6), (20, 60.0, 0.65), (30, 90.0, 0.7)]]
    made = [f.name for f in figures(board, tmp_path)]
    assert "learning-per-minute.png" in made


# ------------------------------------------------------------------------------------------------ verdicts


def test_quick_verdicts_read_an_evidence_suites_section(tmp_path):
    """Round trip: a suite's tables written to RESULTS.md under section_key(suite), read back by another suite's
    column with the same title (the headline's rows by their titles, intervals from its cells)."""
    evidence_suite = _text_suite(seeds=3)
    p = plan(evidence_suite, tmp_path / "evidence")
    for seed, (bert, rand) in enumerate(((0.60, 0.50), (0.62, 0.51), (0.61, 0.52))):
        _complete(p, f"bert-c-s{seed}", [_result("probe", bert, "corpus", "test")])
        _complete(p, f"rand-c-s{seed}", [_result("probe", rand, "corpus", "test")])
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Measured figures\n")

    class Args:
        readme, write = None, str(results_md)
    publish(p, Args, "selfsup leaderboard render evidence --write RESULTS.md")
    assert f"<!-- {section_key('t')} -->" in results_md.read_text()
    s = _text_suite(seeds=1)
    probe = next(e for e in s.evaluations if e.name == "probe")
    probe = replace(probe, evidence=matrix.Evidence(section_key("t"), "30 steps"))
    quick_suite = Suite("q", s.representations, (probe,), seeds=1)
    q = plan(quick_suite, tmp_path / "quick")
    for ours, verdict in (((0.7, 0.4), "→ **agrees**"), ((0.4, 0.7), "→ **disagrees** (BERT vs random)")):
        _complete(q, "bert-c-s0", [_result("probe", ours[0], "corpus", "test")])
        _complete(q, "rand-c-s0", [_result("probe", ours[1], "corpus", "test")])
        line = next(x for x in summary_md(collect(q), results_md).splitlines() if x.startswith("- **probe**"))
        assert "evidence at 30 steps (RESULTS.md `leaderboard-t`): BERT 0.610 ± 0.025 · random 0.510 ± 0.025" in line
        assert verdict in line


def test_headline_marks_undefined_and_not_applicable_apart(tmp_path):
    p = plan(_text_suite(seeds=1), tmp_path)
    _complete(p, "d2v-c-s0", [_result("probe", 0.7, "corpus", "test")])
    grid = headline(collect(p))
    d2v = next(row for row in grid.rows if row[0].text == "data2vec")
    assert [e.text for e in d2v[2:5]] == ["–", "0.700 (n=1)", "not run"]
    bow = next(row for row in grid.rows if row[0].text == "bag of words")
    assert [e.text for e in bow[2:4]] == ["·", "·"]


def test_results_sections_are_the_suite_keys(tmp_path):
    path = tmp_path / "R.md"
    write_section(path, section_key("vision"), "x\n")
    assert "<!-- leaderboard-vision -->" in path.read_text()


def test_rows_cut_the_plan_to_what_those_rows_need(data, tmp_path):
    """`leaderboard run --rows`: a row's pretrainings, the downstream runs of its cells and what they depend on;
    no other row's jobs; an unknown row is an error naming the rows there are."""
    suite = make("vision", data)
    full = plan(suite, tmp_path / "runs", seeds=1)
    cut = only_rows(plan(suite, tmp_path / "runs", seeds=1), ["simmim", "pixels"])
    assert set(cut.jobs) < set(full.jobs)
    assert list(cut.jobs) == [j for j in full.jobs if j in cut.jobs]          # the same order
    assert {j for j in cut.jobs if "simmim" not in j and "pixels" not in j} == set()
    want = {j for (rep, _), ids in full.cells.items() if rep in ("simmim", "pixels") for j in ids}
    assert want <= set(cut.jobs) and "simmim-cifar10-s0" in cut.jobs and "cifar-finetune--simmim-s0" in cut.jobs
    assert all(d in cut.jobs for job in cut.jobs.values() for d in job.deps)
    with pytest.raises(SuiteError, match="rows: mae, simmim"):
        only_rows(full, ["simmim", "nope"])
    assert main(["plan", "--suite", "vision", "--seeds", "1", "--data", str(data), "--rows", "nope"]) == 2


@pytest.mark.parametrize("name", ["vision", "language"])
def test_only_seed_cuts_the_plan_to_those_seeds_and_what_they_need(data, tmp_path, name, capsys):
    """`leaderboard run --only-seed 1`: every job of seed 1 and what it needs (the language suite's exports of
    seed 1's pretrainings for SST-2), in the plan's order; no job of another seed; an absent seed is an error
    naming those planned."""
    full = plan(make(name, data), tmp_path / "runs", seeds=3)
    cut = only_seeds(full, [1])
    assert list(cut.jobs) == [j for j in full.jobs if j in cut.jobs]
    assert {j for j, job in full.jobs.items() if job.seed == 1} <= set(cut.jobs)
    assert all(d in cut.jobs for job in cut.jobs.values() for d in job.deps)
    assert not [j for j in cut.jobs if j.endswith(("-s0", "-s2"))]
    seeded = [j for (_, _), ids in full.cells.items() for j in ids[1:2]]
    assert seeded and set(seeded) <= set(cut.jobs)
    if name == "language":
        assert any(j.endswith("-s1/export") for j in cut.jobs)
    with pytest.raises(SuiteError, match="seeds: 0, 1, 2"):
        only_seeds(full, [3])
    assert main(["plan", "--suite", name, "--seeds", "3", "--data", str(data), "--only-seed", "7"]) == 2
    # `plan` says what the folder holds of each job
    first = next(iter(cut.jobs))
    _complete(full, first, [_result("probe", 0.6, "corpus", "test")])
    capsys.readouterr()
    assert main(["plan", "--suite", name, "--seeds", "3", "--data", str(data), "--out", str(tmp_path / "runs"),
                 "--only-seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{first} [complete]" in out and f"(1 complete, {len(cut.jobs) - 1} new in" in out


def test_keep_copies_the_records_the_tables_read_and_no_weights(tmp_path):
    """`leaderboard keep`: every finished job that nothing unfinished needs, as the small files the tables read
    (a kept folder renders the same cells and `run` would skip its jobs); no checkpoint weights; an export as a
    marker; a pretraining whose downstream run is unfinished stays behind; runs already kept are left."""
    suite = _text_suite(seeds=2)
    p = plan(suite, tmp_path / "runs")
    for job_id, job in p.jobs.items():
        if job.seed != 0:
            continue
        if job.kind == "export":
            p.dir(job_id).mkdir(parents=True)
            (p.dir(job_id) / "model.safetensors").write_bytes(b"w" * 1000)
            continue
        _complete(p, job_id, [_result("probe", 0.6, "corpus", "test", train_seconds=90.0),
                              _result("acc", 0.7, "glue", "dev"), _result("mlm_accuracy", 0.3, "corpus", "valid")])
        ckpt = p.dir(job_id) / "checkpoints" / "step_00000010"
        ckpt.mkdir(parents=True)
        (ckpt / "meta.json").write_text(json.dumps({"train_seconds": 30.0}))
        (ckpt / "model.safetensors").write_bytes(b"w" * 1000)
        (p.dir(job_id) / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    before = collect(p)
    _complete(p, "bert-c-s1", [_result("probe", 0.61, "corpus", "test")])      # its SST-2 runs are not made
    dest = tmp_path / "kept"
    outcome = keep(p, dest, log=lambda *_: None)
    seed0 = [j for j, job in p.jobs.items() if job.seed == 0]
    assert sorted(outcome["kept"]) == sorted(seed0) and outcome["needed"] == ["bert-c-s1"]
    assert not list(dest.rglob("*.safetensors")) and not (dest / "bert-c-s1").exists()
    assert (dest / "bert-c-s0" / "checkpoints" / "step_00000010" / "meta.json").is_file()
    assert (dest / "bert-c-s0" / "metrics.jsonl").read_text() == '{"step": 10, "loss": 1.0}\n'
    kept = plan(suite, dest)
    assert all(job_state(kept.jobs[j], dest) == "complete" for j in seed0)
    exports = [j for j in seed0 if p.jobs[j].kind == "export"]
    assert exports and all(json.loads((dest / j / "KEPT.json").read_text())["job"] == j for j in exports)
    after = collect(kept)
    assert {k: c.values for k, c in before.cells.items()} == {k: c.values for k, c in after.cells.items()}
    assert after.cells[("bert", "sst")].curves == before.cells[("bert", "sst")].curves != []
    # through an export: seed 1's pretraining and export finished, one SST-2 run from the export not
    d2v = [j for j, job in p.jobs.items() if j.startswith("d2v-c-s1")]
    export = next(j for j in d2v if p.jobs[j].kind == "export")
    _complete(p, "d2v-c-s1", [_result("probe", 0.7, "corpus", "test")])
    for j in d2v:
        if p.jobs[j].kind == "export":
            p.dir(j).mkdir(parents=True)
    assert {"d2v-c-s1", export} <= set(keep(p, dest, log=lambda *_: None)["needed"])
    assert not (dest / "d2v-c-s1").exists()          # no export marker made its pretraining's folder early
    # a folder in DEST that holds no finished run is copied again; a keep stopped between its renames is undone
    shutil.rmtree(dest / "rand-c-s0")
    (dest / "rand-c-s0").mkdir()
    (dest / "bert-c-s0").rename(dest / "bert-c-s0.replaced")
    again = keep(p, dest, log=lambda *_: None)
    assert "rand-c-s0" in again["kept"] and "d2v-c-s0" in again["already"]
    assert all(job_state(kept.jobs[j], dest) == "complete" for j in ("rand-c-s0", "bert-c-s0"))
    assert not (dest / "bert-c-s0.replaced").exists()
    (p.dir("bert-c-s0") / "metrics.jsonl").write_text("changed\n")
    assert keep(p, dest, log=lambda *_: None)["already"] == seed0
    assert (dest / "bert-c-s0" / "metrics.jsonl").read_text() == '{"step": 10, "loss": 1.0}\n'
    assert "bert-c-s0" in keep(p, dest, replace=True, log=lambda *_: None)["kept"]
    assert (dest / "bert-c-s0" / "metrics.jsonl").read_text() == "changed\n"
