"""Corpora, tokenizers, NSP pairs and masking."""
import random
import sys

import pytest
import torch

from language import corpus as C
from language.instances import Masker, Pair, packed_sequences, sentence_pairs
from language.tokenizer import TokenizerError, load_tokenizer, train_wordpiece

SENTS = ["The cat sat on the mat.", "A dog barked at the mailman.", "Rain fell over the quiet town.",
         "She wrote a letter to her brother.", "Birds sang in the morning light.", "The train left the station early."]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_wordpiece(SENTS * 20, 200, tmp_path_factory.mktemp("tok"))


def test_bert_format_documents(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("First sentence.\nSecond one.\n\n\nOther doc.\nIts second.\nThird.\n")
    docs = list(C.read_bert_format(f))
    assert [d.sentences for d in docs] == [["First sentence.", "Second one."], ["Other doc.", "Its second.", "Third."]]


def test_plain_text_split_and_hf_dataset(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "news.txt").write_text("Hello there. This is a test! Is it?\n\nNew paragraph here.")
    docs = list(C.read_plain_text(tmp_path / "t"))
    assert docs[0].sentences == ["Hello there.", "This is a test!", "Is it?", "New paragraph here."]
    assert docs[0].topic == "news"
    import datasets
    datasets.Dataset.from_dict({"text": ["One. Two.", "Three. Four."], "label": ["a", "b"]}).save_to_disk(
        str(tmp_path / "ds"))
    rows = list(C.read_hf_dataset(tmp_path / "ds", topic_field="label"))
    assert [d.sentences for d in rows] == [["One.", "Two."], ["Three.", "Four."]] and rows[1].topic == "b"
    with pytest.raises(C.CorpusError, match="no column 'body'.*text, label"):
        list(C.read_hf_dataset(tmp_path / "ds", text_field="body"))


def test_bad_corpora_are_clear(tmp_path):
    with pytest.raises(C.CorpusError, match="corpus not found"):
        list(C.read_bert_format(tmp_path / "missing.txt"))
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait.\n".encode("latin-1"))
    with pytest.raises(C.CorpusError, match="not UTF-8"):
        list(C.read_plain_text(tmp_path / "latin.txt"))
    with pytest.raises(C.CorpusError, match="is empty"):
        C.keep_nsp_documents([], "training corpus")
    with pytest.warns(UserWarning, match="dropped 1 of 3 documents with fewer than two sentences"):
        kept = C.keep_nsp_documents([C.Document(["a.", "b."]), C.Document(["c."]), C.Document(["d.", "e."])], "x")
    assert len(kept) == 2


def test_stdlib_corpus_reads_source_without_importing(tmp_path):
    before = set(sys.modules)
    docs = C.stdlib_corpus(cache_dir=tmp_path)
    assert "this" not in set(sys.modules) - before and "antigravity" not in sys.modules
    topics = {d.topic for d in docs}
    assert {"json", "email", "asyncio", "language-reference"} <= topics
    texts = [" ".join(d.sentences) for d in docs]
    assert len(texts) == len(set(texts)) > 5000                     # deduplicated, and a real corpus
    again = C.stdlib_corpus(cache_dir=tmp_path)                      # from the cache
    assert [d.sentences for d in again] == [d.sentences for d in docs]
    train, valid = C.split_documents(docs, 0.05, 0)
    assert len(valid) == int(len(docs) * 0.05) and not {id(d) for d in train} & {id(d) for d in valid}


def test_tokenizer_saves_as_transformers_folder(tokenizer, tmp_path):
    from transformers import AutoTokenizer
    tokenizer.save_pretrained(str(tmp_path / "t"))
    again = AutoTokenizer.from_pretrained(str(tmp_path / "t"), local_files_only=True)
    enc = again("The cat sat.", "A dog barked.")
    assert enc["input_ids"] == tokenizer("The cat sat.", "A dog barked.")["input_ids"]
    assert enc["input_ids"][0] == again.cls_token_id and enc["token_type_ids"][-1] == 1
    with pytest.raises(TokenizerError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "none")


def docs_of_ids(n_docs=30, sents=8, seed=0):
    rng = random.Random(seed)
    next_id = [100]

    def sentence():
        k = rng.randint(3, 9)
        out = list(range(next_id[0], next_id[0] + k))
        next_id[0] += k
        return out
    return [[sentence() for _ in range(sents)] for _ in range(n_docs)]


def test_nsp_pairs_follow_bert_semantics():
    docs = docs_of_ids()
    pairs = sentence_pairs(docs, max_len=512, rng=random.Random(0), short_seq_prob=0.0)   # long: nothing truncated
    streams = [[t for s in d for t in s] for d in docs]
    owner = {t: i for i, st in enumerate(streams) for t in st}
    frac = sum(p.label for p in pairs) / len(pairs)
    assert 0.35 < frac < 0.75
    for p in pairs:
        assert p.a and p.b and len(p.a) + len(p.b) <= 512 - 3
        if not p.label:              # B continues A inside one document
            st = streams[owner[p.a[0]]]
            start = st.index(p.a[0])
            assert st[start:start + len(p.a) + len(p.b)] == p.a + p.b
        else:
            assert owner[p.b[0]] != owner[p.a[0]]
    short = sentence_pairs(docs, max_len=24, rng=random.Random(1))
    assert all(len(p.a) + len(p.b) <= 21 for p in short)


def test_packing_fills_sequences():
    seqs = packed_sequences(docs_of_ids(5), max_len=32, sep_id=3)
    assert all(len(p.a) == 30 and not p.b for p in seqs)


def test_masking_rates_and_specials(tokenizer):
    m = Masker(tokenizer, max_len=64, max_predictions=20)
    ids = tokenizer("the cat sat on the mat . a dog barked at the mailman .", add_special_tokens=False)["input_ids"]
    pair = Pair(ids[:8], ids[8:], 0)
    counts = {"mask": 0, "random_or_kept": 0, "total": 0}
    for i in range(300):
        ex = m(pair, torch.Generator().manual_seed(i), pair_task=True)
        n = int(ex["masked_weights"].sum())
        assert n == round((len(ids) + 3) * 0.15)
        pos = ex["masked_positions"][:n]
        assert ((ex["input_ids"][pos] != tokenizer.cls_token_id).all()
                and (ex["input_ids"][pos] != tokenizer.sep_token_id).all())
        assert ex["input_ids"].shape == (64,) and ex["masked_ids"].shape == (20,)
        counts["mask"] += (ex["input_ids"][pos] == tokenizer.mask_token_id).sum().item()
        counts["total"] += n
    assert 0.74 < counts["mask"] / counts["total"] < 0.86
    a = m(pair, torch.Generator().manual_seed(5), True)
    b = m(pair, torch.Generator().manual_seed(5), True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_whole_word_masking_takes_all_pieces(tokenizer):
    m = Masker(tokenizer, max_len=64, max_predictions=20, unit="word")
    ids = tokenizer("cattrain doglight cattrain birdsang", add_special_tokens=False)["input_ids"]   # unseen words
    pieces = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    assert any(p.startswith("##") for p in pieces)                    # words split into pieces here
    for i in range(50):
        ex = m(Pair(ids, [], -1), torch.Generator().manual_seed(i), pair_task=False)
        chosen = set(ex["masked_positions"][: int(ex["masked_weights"].sum())].tolist())
        for pos in chosen:                                            # a masked piece's whole word is masked
            tok = pieces[pos - 1]
            if tok.startswith("##"):
                assert pos - 1 in chosen


def test_stream_reads_one_window_at_a_time(tokenizer):
    from language.instances import sentence_pairs as make
    from language.stream import example_stream
    pulled = []

    def open_docs():
        for i in range(1000):
            pulled.append(i)
            yield C.Document([f"the cat sat {i}.", "a dog barked.", "rain fell."])
    pairs = example_stream(open_docs, lambda ids, rng: make(ids, 32, rng), tokenizer, window=10, seed=0)
    next(pairs)
    assert len(pulled) == 10                                 # the rest of the corpus is still on disk
