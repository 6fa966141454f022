"""benchmarks/text_probe_diagnosis.py: the variance shares and effective rank it reports, and a real run read
layer by layer through its export."""
import math

import pytest
import torch

from benchmarks.text_probe_diagnosis import between_share, chance_share, diagnose, effective_rank, main
from benchmarks.throughput import spread_table
from language.task import BertTask
from selfsup.config import to_object
from selfsup.errors import UserError

from conftest import TINY_TEXT, make_cfg, train


def test_between_share_is_the_variance_the_groups_explain():
    g = torch.Generator().manual_seed(0)
    group = torch.cat([torch.full((n,), i) for i, n in enumerate(torch.randint(10, 150, (50,), generator=g))])
    N = len(group)
    codes = torch.randn(50, 16, generator=g)
    noise = torch.randn(N, 16, generator=g) + 5                      # an offset mean: the share must centre
    assert 0.97 < between_share(codes[group] + 0.1 * noise, group) <= 1
    assert between_share(noise, group) == pytest.approx(chance_share(group), abs=0.01)   # unrelated: chance
    assert chance_share(group) == pytest.approx(49 / (N - 1))
    half = torch.cat([codes[group][:, :8] / codes[:, :8].std(), noise[:, 8:] - 5], 1)    # half the channels: ~0.5
    assert between_share(half, group) == pytest.approx(0.5, abs=0.05)
    assert math.isnan(between_share(torch.ones(N, 4), group))      # no variance: no share


def test_effective_rank_counts_the_directions_used():
    g = torch.Generator().manual_seed(0)
    assert effective_rank(torch.randn(5000, 32, generator=g)) > 28                     # isotropic: ~all 32
    low = torch.randn(5000, 3, generator=g) @ torch.randn(3, 32, generator=g)
    assert effective_rank(low) < 3.5
    assert effective_rank(torch.ones(10, 4)) == 0


def test_spread_table_gives_mean_and_std_per_group():
    rows = {"a": [{"x": 1.0, "y": 2.0}, {"x": 3.0}], "b": [{"x": 0.5}]}
    assert spread_table("m", rows, ["x", "y"]) == ["| m | a | b |", "|---|---|---|", "| x | 2.000 ± 1.414 | 0.500 |",
                                                  "| y | 2.000 |  |"]


def test_a_run_is_read_layer_by_layer_through_its_export(topic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    run = TINY_TEXT + ["task.corpus.format=text", f"task.corpus.path={topic_folder}", "task.corpus.doc_chars=60",
                       "task.objective=mlm", "trainer.max_steps=2", "trainer.eval_at_end=false",
                       "task.eval.probe_epochs=200"]
    out = train(BertTask, tmp_path / "mlm-s3", run)
    task = BertTask(to_object(make_cfg(BertTask, run)).task)
    task.export(out["model"].eval(), tmp_path / "mlm-s3" / "export")
    name, row, _ = diagnose(tmp_path / "mlm-s3", geometry_docs=40)
    assert name == "mlm"                                         # seeds of one arm form one column
    layers = {k.split(":")[0] for k in row}
    assert layers == {"layer 0", "layer 1"}                      # embeddings + the one block of TINY_TEXT
    assert row["layer 0: linear"] > 0.6                          # disjoint words per topic (chance 0.25)
    with torch.no_grad():                                        # as the evaluation runs it
        evaluation = {s.metric: s.value for s in task.topic_probe(out["model"].eval(), "cpu", "topics")}
    assert row["layer 1: linear"] == pytest.approx(evaluation["linear_probe_top1_mean"], abs=0.02)  # the last layer
    for layer in layers:
        assert 0 < row[f"{layer}: between-document share"] < 1 and 0 < row[f"{layer}: between-position share"] < 1
        assert 1 < row[f"{layer}: effective rank"] <= 32
    assert 0 < row["layer 0: between-document share, chance"] < 0.2 and 0 < row["layer 0: between-position share, "
                                                                                 "chance"] < 0.2
    (tmp_path / "mlm-s3" / "export").rename(tmp_path / "mlm-s3" / "export-step2")      # an export of a given step
    assert diagnose(tmp_path / "mlm-s3" / "export-step2", geometry_docs=40)[:2] == ("mlm @ step2", row)
    results = tmp_path / "RESULTS.md"
    main(["--runs", str(tmp_path / "mlm-s3" / "export-step2"), "--geometry-docs", "40", "--section", "toy",
          "--made-by", "make toy", "--write", str(results)])
    text = results.read_text()
    assert "<!-- text-probe-diagnosis-toy -->" in text and "Runs made by: `make toy`" in text
    assert f"| layer 0: linear | {row['layer 0: linear']:.3f} |" in text
    with pytest.raises(UserError, match="checkpoints/step_<N>"):
        diagnose(tmp_path / "mlm-s3" / "export-step9", geometry_docs=8)


def test_a_folder_that_is_no_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="neither a bert run folder"):
        diagnose(tmp_path / "nothing" / "export", geometry_docs=8)
