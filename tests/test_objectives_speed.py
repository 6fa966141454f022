"""`selfsup bench --suite objectives`: the five text objectives' training steps timed side by side on their own
examples from one corpus, each with its own FLOPs (the `language` suite's equal-time ratios come from it)."""
import torch

from benchmarks.throughput import main, measure, objectives_suite

from conftest import TINY_TEXT


def test_objectives_suite_times_each_objective_on_its_own_examples(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    corpus = (*TINY_TEXT, "task.model.num_layers=2", "task.corpus.format=bert", f"task.corpus.path={corpus_file}",
              "task.data2vec.teacher.top_k=2", "task.data2vec.teacher.clone_batch=2", "task.data2vec.decoder_layers=1")
    suite = objectives_suite("tiny", 4, torch.device("cpu"), corpus)
    rows = measure(suite, torch.device("cpu"), "fp32", False, 1, 2)
    assert [r["name"] for r in rows] == [f"selfsup {o}" for o in ("mlm+nsp", "mlm+sop", "mlm", "electra", "data2vec")]
    flops = {r["name"].split()[1]: r["tflops"] * r["step_s"] for r in rows}     # counted work per step
    # ELECTRA adds a generator and a detection head over every token; data2vec a teacher pass and masked copies
    assert flops["electra"] > flops["mlm+nsp"] and flops["data2vec"] > flops["mlm"]
    assert suite.tokens_per_sample == 32
    out = tmp_path / "RESULTS.md"
    main(["--suite", "objectives", "--batch", "4", "--steps", "1", "--repeats", "2", "--write", str(out),
          "--set", *corpus])
    text = out.read_text()
    assert "<!-- objectives-tiny-cpu-fp32 -->" in text and "selfsup mlm+nsp ÷ this" in text
    assert f"--set {' '.join(corpus)}`" in text          # the corpus it was measured on is in the command
    assert sum(line.startswith("| selfsup") for line in text.splitlines()) == 5
