"""Progress on long phases: one rule (selfsup.progress), bars through the leaderboard's pipe, silence on request."""
from transformers import BertTokenizerFast

from benchmarks import runner
from language.corpus import Document
from language.instances import tokenize_documents
from selfsup import progress


def test_the_rule_terminal_env_and_length(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.shown() is False                     # pytest's stderr is captured: not a terminal
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.shown() and not progress.progress(range(5), desc="x").disable
    assert progress.progress(range(5), desc="x", min_total=6).disable            # short work: no bar
    assert progress.progress(total=10, desc="x", enabled=False).disable           # the caller says no
    monkeypatch.setenv(progress.ENV, "0")
    assert progress.progress(range(5), desc="x").disable


def test_a_long_phase_writes_its_bar_when_asked_and_nothing_otherwise(monkeypatch, capfd, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(vocab))
    docs = [Document(["a cat"] * 100) for _ in range(90)]                 # 9,000 sentences: 3 batches of 4,096
    monkeypatch.setenv(progress.ENV, "1")
    ids = tokenize_documents(docs, tok)
    assert len(ids) == 90 and "tokenize" in capfd.readouterr().err
    monkeypatch.setenv(progress.ENV, "0")
    assert tokenize_documents(docs, tok) == ids and "tokenize" not in capfd.readouterr().err


def test_leaderboard_jobs_get_bars_when_the_leaderboard_is_on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "_tty", lambda: True)                   # our stderr is a terminal
    env = runner.child_env()
    assert env[progress.ENV] == "terminal"                               # the job's is a pipe: told where it ends
    monkeypatch.setattr(progress, "_tty", lambda: False)
    monkeypatch.setenv(progress.ENV, env[progress.ENV])                  # in the job: bars, redrawn every second
    assert progress.shown() and progress.progress(range(3), desc="x").mininterval == 1.0
    monkeypatch.setenv(progress.ENV, "1")                                # asked for in a log: every 30 s
    assert progress.progress(range(3), desc="x").mininterval == 30.0
    monkeypatch.delenv(progress.ENV)
    assert runner.child_env()[progress.ENV] == "0"
    monkeypatch.setenv(progress.ENV, "0")
    monkeypatch.setattr(progress, "_tty", lambda: True)
    assert runner.child_env()[progress.ENV] == "0"                       # the user's choice wins
