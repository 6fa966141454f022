"""benchmarks/text_probe_diagnosis.py: the variance shares and effective rank it reports, and a real run read
layer by layer through its export."""
import pytest
import torch

from benchmarks.text_probe_diagnosis import between_share, diagnose, effective_rank, main
from language.task import BertTask
from selfsup.config import to_object
from selfsup.errors import UserError

from conftest import TINY_TEXT, make_cfg, train


def test_between_share_is_the_variance_the_groups_explain():
    g = torch.Generator().manual_seed(0)
    group = torch.arange(4000) % 50
    by_group = torch.randn(50, 16, generator=g)[group] + 0.05 * torch.randn(4000, 16, generator=g)
    noise = torch.randn(4000, 16, generator=g)
    assert between_share(by_group, group) > 0.99
    assert between_share(noise, group) == pytest.approx(50 / 4000, abs=0.01)    # chance: groups / tokens
    weak = 0.05 * torch.randn(50, 16, generator=g)[group] + noise
    assert between_share(weak, group) < 0.05          # a weak group code under unit noise explains little


def test_effective_rank_counts_the_directions_used():
    g = torch.Generator().manual_seed(0)
    assert effective_rank(torch.randn(5000, 32, generator=g)) > 28                     # isotropic: ~all 32
    low = torch.randn(5000, 3, generator=g) @ torch.randn(3, 32, generator=g)
    assert effective_rank(low) < 3.5


def test_a_run_is_read_layer_by_layer_through_its_export(topic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    run = TINY_TEXT + ["task.corpus.format=text", f"task.corpus.path={topic_folder}", "task.corpus.doc_chars=60",
                       "task.objective=mlm", "trainer.max_steps=2", "trainer.eval_at_end=false",
                       "task.eval.probe_epochs=200"]
    out = train(BertTask, tmp_path / "mlm-s3", run)
    BertTask(to_object(make_cfg(BertTask, run)).task).export(out["model"].eval(), tmp_path / "mlm-s3" / "export")
    name, row = diagnose(tmp_path / "mlm-s3", geometry_docs=40)
    assert name == "mlm"                                         # seeds of one arm form one column
    layers = {k.split(":")[0] for k in row}
    assert layers == {"layer 0", "layer 1"}                      # embeddings + the one block of TINY_TEXT
    assert row["layer 0: linear"] > 0.6                          # disjoint words per topic (chance 0.25)
    for layer in layers:
        assert 0 < row[f"{layer}: between-document share"] < 1 and 0 < row[f"{layer}: between-position share"] < 1
        assert 1 < row[f"{layer}: effective rank"] <= 32
    assert row["layer 0: word-embedding row norm"] > 0
    (tmp_path / "mlm-s3" / "export").rename(tmp_path / "mlm-s3" / "export-step2")      # an export of a given step
    assert diagnose(tmp_path / "mlm-s3" / "export-step2", geometry_docs=40) == ("mlm @ step2", row)
    results = tmp_path / "RESULTS.md"
    main(["--runs", str(tmp_path / "mlm-s3" / "export-step2"), "--geometry-docs", "40", "--section", "toy",
          "--made-by", "make toy", "--write", str(results)])
    text = results.read_text()
    assert "<!-- text-probe-diagnosis-toy -->" in text and "Runs made by: `make toy`" in text
    assert f"| layer 0: linear | {row['layer 0: linear']:.3f} |" in text


def test_a_folder_without_an_export_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="neither a finished bert run"):
        diagnose(tmp_path, geometry_docs=8)
