"""Leaderboard: a suite end to end, resume without rerunning, numbers equal to the Result records."""
import json

import pytest

from benchmarks.curves import arm_curves, plot_return_curves
from benchmarks.leaderboard import _resolve, ci95, main, run_suite
from benchmarks.suites import RunSpec, smoke
from selfsup.stats import interval_estimate, probability_of_improvement

pytestmark = pytest.mark.slow


def test_ci95_known_values():
    assert ci95([1.0]) == (1.0, 0.0)
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and abs(half - 4.303 * 1.0 / 3 ** 0.5) < 1e-9


def test_smoke_suite_runs_renders_and_resumes(tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["run", "--suite", "smoke", "--seeds", "2", "--out", str(out), "--set", "trainer.progress=false"]) == 0
    table = (out / "leaderboard.md").read_text()
    values = {arm: [json.loads((out / f"example-{arm}-s{s}" / "results.json").read_text())[0]["value"] for s in (0, 1)]
              for arm in ("trained", "random")}
    row = next(line for line in table.splitlines() if "| accuracy |" in line)
    assert f"{ci95(values['trained'])[0]:.4f} ± {ci95(values['trained'])[1]:.4f} (2)" in row
    assert f"{ci95(values['random'])[0]:.4f}" in row
    iqm_row = [line for line in table.splitlines() if "| accuracy |" in line][1]
    point, lo, hi = interval_estimate(values["trained"])
    p, plo, phi = probability_of_improvement(values["trained"], values["random"])
    assert f"{point:.4f} [{lo:.4f}, {hi:.4f}]; {p:.2f} [{plo:.2f}, {phi:.2f}]" in iqm_row
    assert (out / "leaderboard.html").read_text().count("data:image/png;base64,") == 2
    assert (out / "leaderboard-example.png").is_file() and (out / "training-curves.png").is_file()

    # resume a half-finished suite: complete runs are skipped, the interrupted one resumes
    finished = (out / "example-trained-s0" / "results.json").stat().st_mtime
    (out / "example-trained-s1" / "results.json").unlink()
    log = run_suite(smoke(), 2, out, ["trainer.progress=false", "trainer.max_steps=40"])
    assert log == ["example-trained-s0: complete, skipped", "example-random-s0: complete, skipped",
                   "example-trained-s1: resumed", "example-random-s1: complete, skipped"]
    assert (out / "example-trained-s0" / "results.json").stat().st_mtime == finished

    # --write puts the tables into a RESULTS.md section with the command and where the numbers came from
    results_md = tmp_path / "RESULTS.md"
    main(["render", str(out), "--suite", "smoke", "--write", str(results_md)])
    section = results_md.read_text()
    assert "<!-- leaderboard-smoke -->" in section and f"Command: `selfsup leaderboard render {out}" in section
    assert f"{ci95(values['trained'])[0]:.4f}" in section and "runs made by code" in section

    # a corrupt results file is reported in the table, not dropped silently
    (out / "example-random-s1" / "results.json").write_text("{not json")
    main(["render", str(out), "--suite", "smoke"])
    table = (out / "leaderboard.md").read_text()
    assert "Not included" in table and "example-random-s1" in table
    assert "(1)" in next(line for line in table.splitlines() if "| accuracy |" in line)   # random arm: one seed left


def test_once_runs_are_shared_by_every_seed(tmp_path):
    specs = {"enc": RunSpec("enc", "mae", "g", "a", once=True), "pol": RunSpec("pol", "ppo", "g", "b")}
    assert _resolve("{run:enc}", tmp_path, 3, specs) == str(tmp_path / "enc-s0")
    assert _resolve("{run:pol}", tmp_path, 3, specs) == str(tmp_path / "pol-s3")


def test_return_curves_interpolate_runs_onto_one_grid(tmp_path):
    for seed, scale in ((0, 1.0), (1, 0.5)):
        d = tmp_path / f"rl-x-s{seed}" / "figures" / "step_00000010"
        d.mkdir(parents=True)
        (d / "return_curve.json").write_text(json.dumps({"env_steps": [100, 200, 300 + seed],
                                                         "return": [0.0, scale, scale],
                                                         "episodes": [1, 1, 1]}))
    specs = [RunSpec("rl-x", "ppo", "rl", "arm")]
    grid, runs = arm_curves(tmp_path, specs, points=3)["arm"]
    assert list(grid) == [100, 200, 300] and runs.shape == (2, 3)
    assert runs[:, 1].tolist() == [1.0, 0.5]
    assert plot_return_curves(tmp_path, specs).is_file()
