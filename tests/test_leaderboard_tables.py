"""Leaderboard machinery without training: the plan (each pretraining once), tables from Result records written
here (intervals, n=1, best only when its interval clears, ranks, states), verdicts against RESULTS.md, the README
block, calibration, and the HTML page in a headless browser when chromium is installed."""
import json
import re
import shutil
import subprocess

import pytest

from benchmarks.board import ci95, collect
from benchmarks.curves import arm_curves, plot_return_curves
from benchmarks.leaderboard import README_BEGIN, README_END, main, render, replace_block
from benchmarks.markdown import page_md, summary_md
from benchmarks.matrix import (
    RANDOM,
    Budget,
    Command,
    Evaluation,
    Evidence,
    Metric,
    Representation,
    Suite,
    SuiteError,
    Train,
)
from benchmarks.page import page_html
from benchmarks.plan import plan
from benchmarks.ranks import mean_ranks
from benchmarks.runner import Journal, Outcome, _write_calibration, command
from selfsup.results import Result, write_results
from selfsup.runs import write_status


def test_ci95_known_values():
    assert ci95([1.0]) == (1.0, 0.0)
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and abs(half - 4.303 * 1.0 / 3 ** 0.5) < 1e-9


# ------------------------------------------------------------------------------------------------- the plan

def _suite(**kw) -> Suite:
    """Two image encoders pretrained on 'scenes' and a text one; a probe read from the pretraining run, a
    downstream run that also needs the text encoder's export, and a column for a spec and a scratch network."""
    pre = lambda b: {"scenes": Train("mae", "tiny", ("task.data.num_train=64",), b)}  # noqa: E731
    reps = (Representation("mae", "image", pre(Budget(steps=50)), label="MAE"),
            Representation("rand", "image", pre(RANDOM), label="random", baseline=True),
            Representation("timm", "image", spec="timm:vit_tiny_patch16_224"),
            Representation("cnn", "image", only=("down",), extra={"down": ("task.encoder.kind=cnn",)}),
            Representation("bert", "text", {"text": Train("bert", "tiny", (), Budget(steps=20))}))
    evs = (Evaluation("probe", "image", "scenes", Metric("acc", "d", "test"), label="probe"),
           Evaluation("down", "image", "scenes", Metric("score", "d", "test"),
                      Train("caption", "tiny", ("task.vision_init={run}", "task.text_init={export:bert}")),
                      label="down", aggregate=kw.pop("aggregate", "mean")))
    return Suite("t", reps, evs, seeds=kw.pop("seeds", 2), **kw)


def test_plan_makes_each_pretraining_once_and_chains_exports(tmp_path):
    p = plan(_suite(), tmp_path)
    ids = list(p.jobs)
    # mae's pretraining is read by the probe column and named by the downstream runs: one job per seed
    assert ids.count("mae-scenes-s0") == 1 and p.cells[("mae", "probe")] == ["mae-scenes-s0", "mae-scenes-s1"]
    assert p.cells[("mae", "down")] == ["down--mae-s0", "down--mae-s1"]
    down = p.jobs["down--mae-s1"]
    assert set(down.deps) == {"mae-scenes-s1", "bert-text-s1/export"}
    assert f"task.vision_init={tmp_path / 'mae-scenes-s1'}" in down.argv
    assert f"task.text_init={tmp_path / 'bert-text-s1' / 'export'}" in down.argv
    assert p.jobs["bert-text-s1/export"].argv[:2] == ("export", "bert")
    # every job comes after what it needs; seeds in order
    for i, job_id in enumerate(ids):
        assert all(ids.index(d) < i for d in p.jobs[job_id].deps)
    assert ids.index("mae-scenes-s1") > ids.index("down--mae-s0")
    # random weights: one step at learning rate 0, saved like any run
    assert {"trainer.max_steps=1", "trainer.lr=0.0"} <= set(p.jobs["rand-scenes-s0"].argv)
    # an encoder spec goes in as it is; no encoder leaves the key at its default
    assert "task.vision_init=timm:vit_tiny_patch16_224" in p.jobs["down--timm-s0"].argv
    assert not any(a.startswith("task.vision_init") for a in p.jobs["down--cnn-s0"].argv)
    assert "task.encoder.kind=cnn" in p.jobs["down--cnn-s0"].argv
    assert ("timm", "probe") not in p.cells and ("cnn", "probe") not in p.cells and ("bert", "down") not in p.cells
    # columns read from pretraining runs reach encoder specs through their fallback command: one run per domain,
    # under the id a pretraining would have, read by every column of that domain
    s = _suite()
    fallback = Command(("probe", "--encoder", "{run}", "--out", "{dir}"))
    probes = tuple(Evaluation(name, "image", "scenes", Metric(name, "d", "test"), fallback=fallback)
                   for name in ("probe", "knn"))
    p = plan(Suite("t", s.representations, probes, seeds=1), tmp_path / "fallback")
    assert p.cells[("mae", "probe")] == ["mae-scenes-s0"] and p.cells[("timm", "probe")] == ["timm-scenes-s0"]
    assert p.cells[("timm", "knn")] == ["timm-scenes-s0"]
    assert p.jobs["timm-scenes-s0"].argv == ("probe", "--encoder", "timm:vit_tiny_patch16_224", "--out",
                                             str(tmp_path / "fallback" / "timm-scenes-s0"))
    # one id is one command: two columns asking for that run differently cannot share it
    other = Evaluation("knn", "image", "scenes", Metric("knn", "d", "test"),
                       fallback=Command(("probe", "--encoder", "{run}", "--seed", "1", "--out", "{dir}")))
    with pytest.raises(SuiteError, match="timm-scenes-s0 is planned with two different commands"):
        plan(Suite("t", s.representations, (probes[0], other), seeds=1), tmp_path / "clash")


def test_plan_shared_domains_and_seed_counts(tmp_path):
    p = plan(_suite(shared=("scenes",)), tmp_path, seeds=3)
    assert p.cells[("mae", "down")] == ["down--mae-s0", "down--mae-s1", "down--mae-s2"]
    assert p.jobs["down--mae-s2"].deps[0] == "mae-scenes-s0"          # one pretraining under every seed
    assert p.cells[("mae", "probe")] == ["mae-scenes-s0"] * 3


def test_minutes_budget_is_calibrated_first(tmp_path):
    s = _suite()
    reps = (Representation("mae", "image", {"scenes": Train("mae", "tiny", (), Budget(minutes=0.5))}),)
    p = plan(Suite("m", reps, s.evaluations[:1]), tmp_path)
    cal = p.jobs["calibrate/mae-scenes"]
    assert cal.minutes == 0.5 and "trainer.max_steps=12" in cal.argv and "trainer.eval_at_end=false" in cal.argv
    assert p.jobs["mae-scenes-s0"].deps == ("calibrate/mae-scenes",)
    # the timed run's metrics -> seconds per step after the warm-up -> steps in the budget
    run = tmp_path / "calibrate" / "mae-scenes"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("trainer:\n  batch_size: 10\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "samples_per_s": 1.0 if i < 3 else 20.0}) + "\n"
                                               for i in range(12)))
    _write_calibration(cal, tmp_path)
    assert json.loads((tmp_path / "calibrate" / "mae-scenes.json").read_text())["steps"] == 60   # 30 s / 0.5 s
    assert "trainer.max_steps=60" in command(p.jobs["mae-scenes-s0"], tmp_path)
    # many GPUs: trainings under torchrun, nothing else
    assert command(p.jobs["mae-scenes-s0"], tmp_path, gpus_per_run=2)[1:5] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    export = plan(_suite(), tmp_path).jobs["bert-text-s0/export"]
    assert command(export, tmp_path, gpus_per_run=2)[1:4] == ["-m", "selfsup", "export"]


def test_bad_suites_are_user_errors(tmp_path):
    with pytest.raises(SuiteError, match="steps or minutes"):
        Budget()
    with pytest.raises(SuiteError, match="no representation named 'nope'"):
        s = _suite()
        plan(Suite("x", s.representations, (Evaluation("e", "image", "scenes", Metric("m"),
                                                       Train("t", "tiny", ("a={export:nope}",))),)), tmp_path)
    assert main(["plan", "--suite", "quick", "--out", str(tmp_path), "--set", "x"]) == 0   # plans, runs nothing
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- tables


def _result(metric: str, value: float, seed: int, step: int = 50, dataset: str = "d") -> Result:
    return Result(task="t", dataset=dataset, split="test", metric=metric, value=value, seed=seed, config_hash="h",
                  code_version="abc", hardware="cpu", wall_time_s=1.0, step=step)


def fake_runs(p, values: dict) -> None:
    """values: (rep, evaluation) -> one value per seed (None: that run never finished)."""
    for (rep, ev_name), per_seed in values.items():
        ev = next(e for e in p.suite.evaluations if e.name == ev_name)
        for job_id, v in zip(p.cells[(rep, ev_name)], per_seed):
            if v is not None:
                write_results(p.dir(job_id) / "results.json", [_result(ev.metric.metric, v, 0)])


def _board(tmp_path, values, **kw):
    p = plan(_suite(**kw), tmp_path)
    fake_runs(p, values)
    return p, collect(p)


def test_cells_intervals_best_and_states(tmp_path):
    p, board = _board(tmp_path, {
        ("mae", "probe"): [0.80, 0.82], ("rand", "probe"): [0.50, 0.52],      # intervals apart: bold
        ("mae", "down"): [0.60, 0.70], ("rand", "down"): [0.64, None],        # overlapping, and one seed missing
        ("timm", "down"): [0.30, 0.31]})
    mae, rand = board.cells[("mae", "probe")], board.cells[("rand", "probe")]
    assert mae.best and not rand.best
    assert mae.stat[0] == pytest.approx(0.81) and mae.stat[2] - mae.stat[0] == pytest.approx(ci95([0.8, 0.82])[1])
    assert not any(c.best for c in board.cells.values() if c.ev.name == "down")   # 0.65 ± 0.6 overlaps the next
    assert board.cells[("rand", "down")].missing == {"down--rand-s1": "not run"}
    md = summary_md(board)
    row = next(line for line in md.splitlines() if line.startswith("| MAE |"))
    assert f"**{0.81:.3f} ± {ci95([0.8, 0.82])[1]:.3f}**" in row and "[^mae-scenes-s0]" in row
    rand_row = next(line for line in md.splitlines() if line.startswith("| random |"))
    assert "0.640 (n=1) (1 of 2; not run)" in rand_row     # one run: no interval, and the missing one is said
    assert "`down--rand-s1`: not run" in md
    assert "| cnn |" in md and "| not run" in next(line for line in md.splitlines() if line.startswith("| cnn |"))
    assert "[^down--mae-s0]: `selfsup train caption" in md and "(needs `mae-scenes-s0`, `bert-text-s0-export`" \
        not in md and "(needs `mae-scenes-s0`, `bert-text-s0/export`)" in md


def test_one_seed_is_never_bold_and_says_n1(tmp_path):
    _, board = _board(tmp_path, {("mae", "probe"): [0.9], ("rand", "probe"): [0.1]}, seeds=1)
    assert not any(c.best for c in board.cells.values())
    row = next(line for line in summary_md(board).splitlines() if line.startswith("| MAE |"))
    assert "0.900 (n=1)" in row and "±" not in row and "**" not in row


def test_failed_and_skipped_runs_are_reported_not_dropped(tmp_path):
    p, _ = _board(tmp_path, {("mae", "probe"): [0.8, 0.8]})
    journal = Journal(tmp_path)
    journal.record(Outcome("bert-text-s0", "failed", "ran", 2, "selfsup: error: unknown config key 'x'"),
                   log=lambda *_: None)
    board = collect(p)
    assert board.states["bert-text-s0"] == "failed"
    assert board.states["bert-text-s0/export"] == "skipped" and "bert-text-s0 (failed)" in board.reasons[
        "bert-text-s0/export"]
    assert board.states["down--mae-s0"] == "skipped"
    md = summary_md(board)
    assert "`bert-text-s0`: failed — selfsup: error: unknown config key 'x'" in md
    mae_row = next(line for line in md.splitlines() if line.startswith("| MAE |"))
    assert "| not run, skipped [^down--mae-s0] |" in mae_row


def test_interrupted_run_is_reported(tmp_path):
    p, _ = _board(tmp_path, {("mae", "probe"): [0.8, None]})
    write_status(p.dir("mae-scenes-s1"), "interrupted", step=20)   # stopped by a signal after a checkpoint, no results
    board = collect(p)
    assert board.states["mae-scenes-s1"] == "interrupted"
    assert "(1 of 2; interrupted)" in next(line for line in summary_md(board).splitlines()
                                          if line.startswith("| MAE |"))


def test_iqm_column_and_mean_rank(tmp_path):
    _, board = _board(tmp_path, {("mae", "probe"): [0.8, 0.9], ("rand", "probe"): [0.1, 0.2],
                                 ("mae", "down"): [5.0, 6.0], ("rand", "down"): [7.0, 8.0],
                                 ("timm", "down"): [1.0, 1.5], ("cnn", "down"): [2.0, 2.0]}, aggregate="iqm")
    assert board.cells[("mae", "down")].stat[1:] != (None, None)       # stratified-bootstrap interval
    ranks = mean_ranks(board)
    # mae: 1st in probe, 2nd in down; rand: 2nd, 1st; timm: 4th of 4 in down only; cnn: 3rd
    assert ranks["mae"][0] == 1.5 and ranks["rand"][0] == 1.5 and ranks["timm"][0] == 4 and ranks["cnn"][0] == 3
    assert ranks["mae"][3] == 2 and ranks["timm"][3] == 1
    lo, hi = ranks["mae"][1:3]
    assert 1 <= lo <= 1.5 <= hi <= 2
    assert mean_ranks(board) == ranks                                  # seeded: the same interval every time
    assert "(IQM)" in summary_md(board)


def test_ties_share_a_rank_and_one_run_per_cell_has_no_rank_interval(tmp_path):
    _, board = _board(tmp_path, {("mae", "probe"): [0.5], ("rand", "probe"): [0.5]}, seeds=1)
    ranks = mean_ranks(board)
    assert ranks["mae"] == (1.5, None, None, 1) and ranks["rand"] == (1.5, None, None, 1)


def test_full_tables_are_folded_and_commands_listed(tmp_path):
    p, board = _board(tmp_path, {("mae", "probe"): [0.8, 0.9], ("rand", "probe"): [0.3, 0.3]})
    md = page_md(board)
    assert "<details><summary>pretraining: mae on scenes</summary>" in md
    assert "| d | test | acc | 0.8500 ± " in md
    # a number that every seed gives (nothing trained varies it) says so instead of a zero-width interval
    assert " | 0.3000 (same at all 2 seeds) |" in md and "0.3000 ± 0.0000" not in md
    assert "0.300 (same at all 2 seeds)" in next(line for line in md.splitlines() if line.startswith("| random |"))
    html = page_html(board)
    assert "<details>" in html and 'class="sortable"' in html and "data-sort=" in html
    assert "http://" not in html and "https://" not in html              # nothing fetched: no CDN, no fonts
    assert 'title="selfsup train mae --preset tiny' in html            # a cell's command as its tooltip


def test_render_writes_page_and_figures(tmp_path):
    p, _ = _board(tmp_path, {("mae", "probe"): [0.8, 0.9], ("rand", "probe"): [0.1, 0.2],
                             ("mae", "down"): [5.0, 6.0]})
    page = render(p)
    assert page.is_file() and (tmp_path / "leaderboard.md").is_file()
    assert (tmp_path / "leaderboard-headline.png").is_file()
    assert page.read_text().count("data:image/png;base64,") == 1      # no training curves without metrics.jsonl


def test_learning_per_minute_from_intermediate_evaluations(tmp_path):
    p = plan(_suite(), tmp_path)
    for seed, job in enumerate(p.cells[("mae", "probe")]):
        rows = [_result("acc", 0.2 * k + 0.01 * seed, seed, step=10 * k) for k in (1, 2, 3)]
        for r, secs in zip(rows, (30.0, 60.0, 90.0)):
            r.train_seconds = secs        # Results carry it once the engine writes it; older ones do not
        write_results(p.dir(job) / "results.json", rows)
    board = collect(p)
    curve = board.cells[("mae", "probe")].curves[0]
    assert [c[0] for c in curve] == [10, 20, 30] and curve[-1][2] == pytest.approx(0.6)
    assert board.cells[("mae", "probe")].values == pytest.approx([0.6, 0.61])    # the latest step is the cell
    render(p)
    assert (tmp_path / "learning-per-minute.png").is_file()


def test_learning_per_minute_draws_the_baseline_as_a_level(tmp_path, monkeypatch):
    import benchmarks.plots as plots
    figs = []
    monkeypatch.setattr(plots, "atomic_save_figure", lambda fig, path: figs.append(fig) or path)
    p = plan(_suite(), tmp_path)
    for seed, job in enumerate(p.cells[("mae", "probe")]):
        rows = [_result("acc", 0.2 * k, seed, step=10 * k) for k in (1, 2, 3)]
        for r, secs in zip(rows, (30.0, 60.0, 90.0)):
            r.train_seconds = secs
        write_results(p.dir(job) / "results.json", rows)
    fake_runs(p, {("rand", "probe"): [0.1, 0.3]})
    plots.plot_learning(collect(p), tmp_path / "l.png")
    (ax,) = [a for a in figs[0].axes if a.get_visible()]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert [ln.get_ydata()[0] for ln in dashed] == [pytest.approx(0.2)]              # random's mean, level
    assert [ln.get_label() for ln in dashed] == ["random (n=2)"]
    assert ax.get_xlabel() == "pretraining minutes"


# ---------------------------------------------------------------------------------------------- evidence


RESULTS = """# Measured figures

<!-- ev-key -->
### something

| dataset | split | metric | pretrained | random |
|---|---|---|---|---|
| d | test | acc | 0.7000 ± 0.0100 | 0.4000 ± 0.0200 |
| d | test | other | 1 | 2 |
<!-- /ev-key -->
"""


@pytest.mark.parametrize("ours, verdict", [((0.8, 0.2), "→ **agrees**"),
                                            ((0.2, 0.8), "→ **disagrees** (MAE vs random) at this budget"),
                                            ((0.5, 0.5), "→ level here (MAE vs random), where the evidence separates")])
def test_verdicts_read_the_evidence_table(tmp_path, ours, verdict):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text(RESULTS)
    s = _suite(seeds=1)
    ev = Evaluation("probe", "image", "scenes", Metric("acc", "d", "test"), label="probe",
                    evidence=Evidence("ev-key", "2,000 steps", {"mae": "pretrained", "rand": "random"}, "d", "acc"))
    p = plan(Suite("t", s.representations, (ev,), seeds=1), tmp_path / "runs")
    fake_runs(p, {("mae", "probe"): [ours[0]], ("rand", "probe"): [ours[1]]})
    line = summary_md(collect(p), results_md)
    assert f"here MAE {ours[0]:.3f} · random {ours[1]:.3f} (pretraining 50 steps; n=1)" in line
    assert "evidence at 2,000 steps (RESULTS.md `ev-key`): MAE 0.7000 ± 0.0100 · random 0.4000 ± 0.0200" in line
    assert verdict in line
    results_md.write_text(RESULTS.replace("0.4000 ± 0.0200", "0.6500 ± 0.0600"))     # spreads overlap
    assert "→ the evidence finds no clear difference" in summary_md(collect(p), results_md)
    results_md.write_text("# nothing here\n")
    assert "RESULTS.md `ev-key` not found" in summary_md(collect(p), results_md)


# ---------------------------------------------------------------------------------------------- README block


def test_readme_block_is_replaced_and_the_rest_kept(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold prose\n{README_END}\nrest\n")
    replace_block(readme, "| new | table |")
    assert readme.read_text() == f"intro\n{README_BEGIN}\n| new | table |\n{README_END}\nrest\n"
    readme.write_text("no markers\n")
    with pytest.raises(SuiteError, match="add the markers"):
        replace_block(readme, "x")
    assert readme.read_text() == "no markers\n"


def test_render_cli_writes_readme_and_results(tmp_path, capsys):
    p, _ = _board(tmp_path / "out", {("mae", "probe"): [0.8, 0.9]})
    (tmp_path / "out" / "suite.json").write_text(json.dumps({"suite": "quick"}))   # render remembers the suite
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\n{README_END}\n")
    assert main(["render", str(tmp_path / "out"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    block = text[text.index(README_BEGIN):text.index(README_END)]
    # compact: the headline table (no footnotes, no budget column) and one line of provenance
    table = [line for line in block.splitlines() if line.startswith("|")]
    assert table[0].startswith("| representation | scenes: linear probe, shape ↑ |") and "[^" not in block
    assert "| MAE |" in block and "pretraining" not in table[0]
    assert [line for line in block.splitlines() if line and not line.startswith(("|", "<!--"))] == [
        next(line for line in block.splitlines() if line.startswith("Suite `quick`"))]
    # and GitHub-flavoured Markdown reads it as one table (CommonMark + the table extension)
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py renders the README block as GFM would")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert rendered.count("<table>") == 1 and rendered.count("<tr>") == len(table) - 1
    assert len(re.findall(r"<th[ >]", rendered)) == table[0].count("|") - 1
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Measured figures\n")
    assert main(["render", str(tmp_path / "out"), "--write", str(results_md)]) == 0
    section = results_md.read_text()
    assert "<!-- leaderboard-quick -->" in section and f"Command: `selfsup leaderboard render {tmp_path / 'out'}" \
        in section and "runs made by code abc" in section and "<details><summary>pretraining: mae on scenes" in section
    assert main(["render", str(tmp_path / "missing")]) == 2
    assert "is not a folder of runs" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- RL curves


def test_return_curves_interpolate_runs_onto_one_grid(tmp_path):
    runs = []
    for seed, scale in ((0, 1.0), (1, 0.5)):
        d = tmp_path / f"rl-x-s{seed}" / "figures" / "step_00000010"
        d.mkdir(parents=True)
        (d / "return_curve.json").write_text(json.dumps({"env_steps": [100, 200, 300 + seed],
                                                         "return": [0.0, scale, scale], "episodes": [1, 1, 1]}))
        runs.append(tmp_path / f"rl-x-s{seed}")
    grid, values = arm_curves({"arm": runs}, points=3)["arm"]
    assert list(grid) == [100, 200, 300] and values.shape == (2, 3)
    assert values[:, 1].tolist() == [1.0, 0.5]
    assert plot_return_curves({"arm": runs}, tmp_path / "r.png").is_file()


# ---------------------------------------------------------------------------------------------- the page in a browser


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_page_renders_offline_and_sorts_in_chromium(tmp_path):
    p, _ = _board(tmp_path, {("mae", "probe"): [0.8, 0.9], ("rand", "probe"): [0.1, 0.2],
                             ("mae", "down"): [5.0, 6.0], ("rand", "down"): [7.0, 8.0], ("timm", "down"): [1.0, 2.0]})
    page = render(p)

    def rows(query: str) -> list[str]:
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--dump-dom", page.as_uri() + query],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        body = out.stdout.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        return [re.sub(r"<.*?>", "", r.split("</td>")[0]) for r in body.split("<tr>")[1:]]

    assert rows("") == ["MAE", "random", "timm", "cnn"]                  # suite order
    assert rows("?sort=3&desc=1") == ["random", "MAE", "timm", "cnn"]   # by "down", best first; cnn has none
    assert rows("?sort=3&desc=0") == ["timm", "MAE", "random", "cnn"]
    assert rows("?sort=0&desc=0") == ["cnn", "MAE", "random", "timm"]          # text: locale order
    # looked at as a user would: a screenshot that is not blank, and every plot an image that decodes, inline
    shot = tmp_path / "page.png"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    import base64
    import io

    import numpy as np
    from PIL import Image
    grey = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert grey.shape == (1600, 1200) and grey.std() > 10 and (grey < 128).mean() > 0.005      # text and plots drawn
    html = page.read_text()
    plots = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert plots and all(Image.open(io.BytesIO(base64.b64decode(b))).size[0] > 100 for b in plots)
    assert not re.search(r'(src|href)="(https?:)?//', html)                       # nothing fetched from the net


def test_headline_plot_one_axis_per_metric_only_the_arms_present_and_the_baseline(tmp_path, monkeypatch):
    import benchmarks.plots as plots
    from benchmarks.plots import plot_headline
    figs = []
    monkeypatch.setattr(plots, "atomic_save_figure", lambda fig, path: figs.append(fig) or path)
    _, board = _board(tmp_path, {("mae", "probe"): [0.8, 0.9], ("rand", "probe"): [0.1, 0.2],
                                 ("mae", "down"): [5.0, 6.0], ("timm", "down"): [1.0, 2.0]})
    plot_headline(board, tmp_path / "h.png")
    axes = [ax for ax in figs[0].axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["probe ↑", "down ↑"]                # one axis per metric, own scale
    labels = [[t.get_text() for t in ax.get_yticklabels()] for ax in axes]
    assert labels == [["MAE (n=2)", "random (n=2)"], ["MAE (n=2)", "timm (n=2)"]]
    assert axes[0].get_xlim()[1] < 2 and axes[1].get_xlim()[1] > 6            # accuracies not on the scores' axis
    dashed = [ln.get_xdata()[0] for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert dashed == [pytest.approx(0.15)]                                      # the baseline's mean, dashed
    assert not [ln for ln in axes[1].get_lines() if ln.get_linestyle() == "--"]   # no baseline ran there
