"""BERT pretraining: parity with BertForPreTraining, the sparse MLM head, export/import, the task end to end."""
import json

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertForPreTraining

from language.model import BertModelConfig, BertPretrainer, hf_config
from language.task import BertTask
from language.tokenizer import TokenizerError

from conftest import TINY_TEXT, make_cfg, run_cli, train

CFG = BertModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64)


def random_batch(vocab=100, B=4, T=24, P=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, T + 1, (B,), generator=g)
    attention = (torch.arange(T)[None] < lengths[:, None]).long()
    ids = torch.randint(5, vocab, (B, T), generator=g) * attention
    positions = torch.stack([torch.randperm(int(n) - 1, generator=g)[:P] + 1 for n in lengths])
    weights = torch.ones(B, P)
    weights[0, -2:] = 0                                       # padding predictions are ignored
    return {"input_ids": ids, "token_type_ids": (torch.arange(T)[None] > lengths[:, None] // 2).long() * attention,
            "attention_mask": attention, "masked_positions": positions,
            "masked_ids": torch.randint(5, vocab, (B, P), generator=g), "masked_weights": weights,
            "pair_label": torch.tensor([0, 1, 1, 0])}


def test_loss_equals_bert_for_pretraining():
    torch.manual_seed(0)
    ours = BertPretrainer(hf_config(CFG, 100)).eval()
    peer = BertForPreTraining(hf_config(CFG, 100)).eval()
    peer.load_state_dict(ours.hf.state_dict())
    b = random_batch()
    labels = torch.full_like(b["input_ids"], -100)
    for i in range(4):
        for p, t, w in zip(b["masked_positions"][i], b["masked_ids"][i], b["masked_weights"][i]):
            if w > 0:
                labels[i, p] = t
    with torch.no_grad():
        loss, _ = ours(**b)
        out = peer(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
                   labels=labels, next_sentence_label=b["pair_label"])
    torch.testing.assert_close(loss, out.loss, rtol=1e-5, atol=1e-6)
    assert ours.hf.cls.predictions.decoder.weight is ours.hf.bert.embeddings.word_embeddings.weight   # tied


def test_sparse_head_runs_vocab_projection_on_masked_positions_only():
    from torch.utils.flop_counter import FlopCounterMode
    model = BertPretrainer(hf_config(CFG, 1000)).eval()
    b = random_batch(vocab=1000)
    with FlopCounterMode(display=False) as fc:
        model(**b)
    counts = fc.get_flop_counts()["Global"]
    dense_vocab = 2 * 4 * 24 * 32 * 1000
    assert sum(counts.values()) < dense_vocab              # the whole step costs less than a dense vocab head


def test_export_loads_in_transformers_with_identical_hidden_states(tmp_path, tokenizer_dir):
    model = BertPretrainer(hf_config(CFG, 200)).eval()
    model.hf.save_pretrained(str(tmp_path / "exp"), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(tmp_path / "exp"))
    auto = AutoModel.from_pretrained(str(tmp_path / "exp"), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "exp"), local_files_only=True)
    enc = tok(["the cat sat on the mat."], return_tensors="pt")
    with torch.no_grad():
        ours = model.hf.bert(**enc).last_hidden_state
        theirs = auto(**enc).last_hidden_state
    torch.testing.assert_close(theirs, ours)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from language.tokenizer import train_wordpiece
    d = tmp_path_factory.mktemp("tok")
    train_wordpiece(corpus_lines() * 3, 200, d)
    return d


def corpus_lines():
    return [f"Document {i} sentence {j} talks about the {w} near the river." for i in range(40) for j in range(4)
            for w in (["cat", "dog", "bird", "fish"][i % 4],)]


TINY = TINY_TEXT


def corpus_args(f):
    return ["task.corpus.format=bert", f"task.corpus.path={f}"]


def test_task_trains_reports_and_exports_without_its_corpus(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    run, corpus = tmp_path / "run", tmp_path / "corpus.txt"
    corpus.write_text(corpus_file.read_text())
    train(BertTask, run, TINY + corpus_args(corpus) + ["trainer.max_steps=8", "trainer.checkpoint_every=8"])
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rec[-1]["loss"] < rec[0]["loss"] and rec[-1]["tokens_per_s"] > 0 and "nsp_acc" in rec[-1]
    res = {r["metric"]: r["value"] for r in json.loads((run / "results.json").read_text())}
    assert {"mlm_accuracy", "mlm_loss", "nsp_accuracy", "pseudo_perplexity", "mlm_accuracy_unigram_baseline",
            "nsp_accuracy_majority_baseline"} <= set(res)
    assert 0.5 <= res["nsp_accuracy_majority_baseline"] <= 1
    assert 0 <= res["mlm_accuracy"] <= 1 and res["pseudo_perplexity"] > 1
    # export through the CLI with the corpus gone and an empty cache: the tokenizer comes from the checkpoint
    corpus.unlink()
    out = run_cli("export", "bert", "--checkpoint", str(run), "--out", str(tmp_path / "hf"),
                  env={"SELFSUP_CACHE": str(tmp_path / "empty-cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert not (tmp_path / "empty-cache").exists()
    auto = BertForPreTraining.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    assert auto.config.vocab_size == len(tok) and tok.model_max_length == 64
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in (tmp_path / "hf").iterdir())
    # fill-mask on an input longer than the model's positions: truncated to them, not a crash
    from transformers import pipeline
    fill = pipeline("fill-mask", model=str(tmp_path / "hf"), tokenizer=str(tmp_path / "hf"))
    long = "the [MASK] sat near the river . " + "the dog talks about the fish near the river . " * 30
    assert len(tok(long)["input_ids"]) > 300
    assert len(fill(long, tokenizer_kwargs={"truncation": True})) == 5


def test_pseudo_perplexity_is_not_reported_when_no_sentence_was_scored(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    from selfsup.config import to_object
    task = BertTask(to_object(make_cfg(BertTask, TINY + corpus_args(corpus_file))).task)
    model = task.build_model().eval()
    task.valid_ids = [[[7] * 40]]                       # one held-out sentence, longer than task.max_len
    with pytest.warns(UserWarning, match="pseudo-perplexity not reported"):
        assert task._pseudo_perplexity(model, torch.device("cpu"), "x") == []
    task.valid_ids = [[[7] * 5, [8] * 6]]
    (score,) = task._pseudo_perplexity(model, torch.device("cpu"), "x")
    assert score.value > 1 and score.extra["tokens"] == 11


def test_init_from_transformers_checkpoint_and_tokenizer_mismatch(corpus_file, tmp_path, tokenizer_dir, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    hf = BertForPreTraining(hf_config(CFG, len(tok)))
    hf.save_pretrained(str(tmp_path / "ckpt"))
    tok.save_pretrained(str(tmp_path / "ckpt"))
    from selfsup.config import to_object
    cfg = to_object(make_cfg(BertTask, TINY + corpus_args(corpus_file) + [f"task.init={tmp_path / 'ckpt'}"])).task
    model = BertTask(cfg).build_model()
    for k, v in hf.state_dict().items():
        assert torch.equal(model.hf.state_dict()[k], v), k
    # a checkpoint whose vocabulary does not fit the tokenizer
    BertForPreTraining(hf_config(CFG, len(tok) + 7)).save_pretrained(str(tmp_path / "other"))
    cfg = to_object(make_cfg(BertTask, TINY + corpus_args(corpus_file) +
                             [f"task.init={tmp_path / 'other'}", f"task.tokenizer={tokenizer_dir}"])).task
    with pytest.raises(TokenizerError, match=f"tokenizer has {len(tok)} tokens but the checkpoint"):
        BertTask(cfg).build_model()


def test_mlm_only_packing(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    from selfsup.config import to_object
    task = BertTask(to_object(make_cfg(BertTask, TINY + corpus_args(corpus_file) + ["task.objective=mlm"])).task)
    ex = task.example(task._pairs(task.train_ids, 1)[0], torch.Generator().manual_seed(0))
    assert ex["attention_mask"].all() and ex["pair_label"] == -1        # full sequence, no NSP


def test_streaming_resume_equals_uninterrupted_and_matches_plan(corpus_file, tmp_path, monkeypatch):
    """Streamed corpus: bounded window, same examples after a resume, per-rank slices of one global batch."""
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    stream = TINY + corpus_args(corpus_file) + ["task.corpus.stream=true", "task.corpus.window=7",
                                                "trainer.max_steps=6", "trainer.log_every=1", "trainer.batch_size=8"]
    train(BertTask, tmp_path / "a", stream)
    train(BertTask, tmp_path / "b", stream + ["trainer.stop_at=3"])
    train(BertTask, tmp_path / "b", stream, resume=True)
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == 6 and la == lb
    from selfsup.config import to_object
    from selfsup.task import BatchPlan
    task = BertTask(to_object(make_cfg(BertTask, stream)).task)
    one = next(iter(task.train_batches(BatchPlan(8, 1, 0, 1, 0, 0))))
    r0 = next(iter(task.train_batches(BatchPlan(2, 2, 0, 2, 0, 0))))   # rank 0 of 2, micro-step 0 of 2
    r1 = next(iter(task.train_batches(BatchPlan(2, 2, 1, 2, 0, 0))))
    assert torch.equal(r0["input_ids"], one["input_ids"][0:2]) and torch.equal(r1["input_ids"], one["input_ids"][2:4])
