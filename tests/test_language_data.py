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


def cache_as_if_downloaded(cache, name: str, rows: list[dict]) -> None:
    """What `datasets.load_dataset(name)` leaves in its cache after fetching a hub dataset of JSON files
    (<cache>/<org>___<name>/default/0.0.0/<hash>/<name>-train.arrow + dataset_info.json), written here offline."""
    import json
    import shutil

    import datasets
    src = cache.parent / "rows.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    datasets.load_dataset("json", data_files={"train": str(src)}, split="train", cache_dir=str(cache / "build"))
    built = next((cache / "build" / "json").glob("default-*/0.0.0/*/"))
    org, short = name.split("/")
    target = cache / f"{org}___{short}" / "default" / "0.0.0" / built.name
    shutil.copytree(built, target)
    (target / "json-train.arrow").rename(target / f"{short}-train.arrow")
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "builder_name": short, "dataset_name": short}))
    shutil.rmtree(cache / "build")


def test_text_dataset_by_name_offline_and_downloaded_only_when_asked(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    from language.task import CorpusConfig, iter_corpus
    from selfsup.hub import DatasetUnavailable
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)                # as on a machine with internet:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)     # only download=true may reach out
    cache_as_if_downloaded(tmp_path / "cache", "someone/corpus",
                           [{"text": f"Story {i} begins. It ends well.", "genre": f"g{i % 2}"} for i in range(6)])
    cfg = CorpusConfig(format="hf", path="someone/corpus", topic_field="genre")
    docs = list(iter_corpus(cfg))                                     # no download: the local cache
    assert [d.sentences for d in docs[:2]] == [["Story 0 begins.", "It ends well."], ["Story 1 begins.",
                                                                                       "It ends well."]]
    assert docs[1].topic == "g1" and len(list(iter_corpus(CorpusConfig(format="hf", path="hf:someone/corpus")))) == 6
    with pytest.raises(DatasetUnavailable, match="'someone/elsewhere' is neither .* Set task.corpus.download=true"):
        list(iter_corpus(CorpusConfig(format="hf", path="someone/elsewhere")))
    with pytest.raises(C.CorpusError, match="dataset not found"):
        list(iter_corpus(CorpusConfig(format="hf", path="./no/such/folder")))
    asked = []

    def fetch(name, split=None, streaming=False, **kw):             # stands in for the Hub: records how it was asked
        asked.append((name, split, huggingface_hub.constants.HF_HUB_OFFLINE))
        return datasets.Dataset.from_dict({"text": ["Fetched. Text."]})
    monkeypatch.setattr(datasets, "load_dataset", fetch)
    got = list(iter_corpus(CorpusConfig(format="hf", path="someone/elsewhere", download=True)))
    assert asked == [("someone/elsewhere", "train", False)] and got[0].sentences == ["Fetched.", "Text."]


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


# ------------------------------------------------------------------------------ one big file, as users have them

SPEAKERS = ["First Citizen", "MENENIUS", "All", "Second Citizen"]


def write_play(path, speeches=300, seed=0):
    """A file laid out like Tiny Shakespeare: `NAME:` then verse lines, speeches separated by blank lines."""
    rng = random.Random(seed)
    words = "good lord the people corn we speak hunger bread gods know revenge content proud".split()
    out = []
    for i in range(speeches):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() +
                 rng.choice([".", "?", "!", ",", ";"]) for _ in range(rng.randint(1, 4))]
        out.append(f"{SPEAKERS[i % 4]}:\n" + "\n".join(lines) + "\n")
    path.write_text("\n".join(out))
    return path


def test_one_file_split_into_paragraph_documents_chunks_or_one(tmp_path):
    f = write_play(tmp_path / "input.txt")
    text = f.read_text()
    docs = list(C.read_plain_text(f, "paragraphs", doc_chars=500))
    sizes = [sum(len(s) for s in d.sentences) for d in docs]
    assert len(docs) > 10 and all(s >= 450 for s in sizes[:-1])          # grouped speeches of >= doc_chars
    assert all(d.topic == "input" for d in docs)
    speeches = [" ".join(p.split()) for p in text.split("\n\n")]
    flat = [s for d in docs for s in d.sentences]
    assert " ".join(flat) == " ".join(speeches)                            # nothing lost, nothing reordered
    def starts(parts):
        offsets, k = set(), 0
        for part in parts:
            offsets.add(k)
            k += len(part) + 1
        return offsets
    assert starts(speeches) <= starts(flat)                                # every speech starts a sentence
    chunks = list(C.read_plain_text(f, "chunks", doc_chars=300))
    assert all(len(" ".join(d.sentences)) <= 300 for d in chunks) and len(chunks) >= len(text) // 300
    assert " ".join(" ".join(d.sentences) for d in chunks) == " ".join(text.split())
    assert len(list(C.read_plain_text(f, "file"))) == 1
    with pytest.raises(C.CorpusError, match="unknown task.corpus.split 'lines'"):
        list(C.read_plain_text(f, "lines"))


def test_a_corpus_too_small_for_its_held_out_split_says_so(tmp_path):
    with pytest.raises(C.CorpusError, match=r"has 1 document \(50 characters\).*leaves 0 for training.*split="):
        C.split_documents([C.Document(["x" * 50])], 0.05, 0, what="the corpus")
    train, valid = C.split_documents([C.Document([str(i)]) for i in range(40)], 0.05, 0)
    assert (len(train), len(valid)) == (38, 2)


def test_datasets_from_local_parquet_and_jsonl(tmp_path):
    import datasets
    ds = datasets.Dataset.from_dict({"body": ["One. Two.", "Three. Four."], "kind": ["a", "b"]})
    ds.to_parquet(str(tmp_path / "part-0.parquet"))
    ds.to_json(str(tmp_path / "rows.jsonl"))
    for path in (tmp_path / "part-0.parquet", tmp_path / "rows.jsonl"):
        rows = list(C.read_hf_dataset(path, text_field="body", topic_field="kind"))
        assert [d.sentences for d in rows] == [["One.", "Two."], ["Three.", "Four."]] and rows[1].topic == "b"
    with pytest.raises(C.CorpusError, match="neither a folder saved with save_to_disk nor parquet"):
        list(C.read_hf_dataset(tmp_path, text_field="body"))           # parquet and json mixed


TINYSHAKESPEARE = C.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


@pytest.mark.skipif(not TINYSHAKESPEARE.is_file(), reason=f"real data not here: {TINYSHAKESPEARE}")
def test_tiny_shakespeare_as_documents_with_meaningful_sentence_pairs(tmp_path, monkeypatch):
    from language.task import BertTask
    from selfsup.config import to_object

    from conftest import make_cfg
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    task = BertTask(to_object(make_cfg(BertTask, ["task.corpus.format=text", f"task.corpus.path={TINYSHAKESPEARE}",
                                                  "task.vocab_size=2000", "task.dupe_factor=1"])).task)
    corpus = task.corpus
    assert 400 < len(corpus["all"]) < 700 and len(corpus["valid"]) >= 20      # ~1.1M characters / 2,000
    positive = sum(p.label for p in task.valid_pairs) / len(task.valid_pairs)
    assert len(task.valid_pairs) > 100 and 0.4 < positive < 0.6               # NSP near 50/50: a real task


# ------------------------------------------------------------------------------ ALBERT's SOP, SpanBERT, ELECTRA masks


def test_sop_pairs_are_consecutive_segments_in_or_out_of_order():
    docs = docs_of_ids()
    streams = [[t for s in d for t in s] for d in docs]
    owner = {t: i for i, st in enumerate(streams) for t in st}
    pairs = sentence_pairs(docs, max_len=512, rng=random.Random(0), short_seq_prob=0.0, task="sop")
    assert 0.4 < sum(p.label for p in pairs) / len(pairs) < 0.6
    for p in pairs:
        first, second = (p.b, p.a) if p.label else (p.a, p.b)
        st = streams[owner[first[0]]]
        start = st.index(first[0])
        assert owner[second[0]] == owner[first[0]] and st[start:start + len(p.a) + len(p.b)] == first + second
    one = sentence_pairs([[list(range(100, 110))]], max_len=64, rng=random.Random(0), task="sop")
    assert len(one) == 1 and sorted(one[0].a + one[0].b) == list(range(100, 110))   # one sentence: split inside


def test_span_masking_masks_whole_word_spans_of_geometric_length(tokenizer):
    m = Masker(tokenizer, max_len=512, mask_prob=0.15, max_predictions=200, unit="span")
    words = ("cattrain doglight " + " ".join(SENTS)).lower().split() * 10
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:500]
    assert len(ids) == 500
    pieces = tokenizer.convert_ids_to_tokens(ids)
    starts = {i + 1 for i, p in enumerate(pieces) if not p.startswith("##")}     # positions of word starts
    runs = []
    for seed in range(40):
        ex = m(Pair(ids, [], -1), torch.Generator().manual_seed(seed), pair_task=False)
        n = int(ex["masked_weights"].sum())
        chosen = ex["masked_positions"][:n].tolist()
        assert n == round(502 * 0.15)
        for pos in chosen:                                   # a masked piece's whole word is masked (but budget cuts)
            if pos not in starts:
                assert pos - 1 in chosen or pos == max(chosen)
        run = 1
        for a, b in zip(chosen, chosen[1:]):
            if b == a + 1:
                run += b in starts
            else:
                runs.append(run)
                run = 1
    mean = sum(runs) / len(runs)
    assert 2.5 < mean < 5.0              # spans in words, clipped geometric(0.2) has mean 3.8 (runs can merge)


def test_electra_masks_show_mask_or_the_original_never_a_random_token(tokenizer):
    m = Masker(tokenizer, max_len=64, max_predictions=20, mask_token_prob=0.85, random_token_prob=0.0)
    ids = tokenizer(" ".join(SENTS).lower(), add_special_tokens=False)["input_ids"][:40]
    shown = {"mask": 0, "original": 0, "other": 0}
    for i in range(300):
        ex = m(Pair(ids, [], -1), torch.Generator().manual_seed(i), pair_task=False)
        n = int(ex["masked_weights"].sum())
        for pos, orig in zip(ex["masked_positions"][:n].tolist(), ex["masked_ids"][:n].tolist()):
            tok = int(ex["input_ids"][pos])
            shown["mask" if tok == tokenizer.mask_token_id else "original" if tok == orig else "other"] += 1
    total = sum(shown.values())
    assert shown["other"] == 0 and 0.81 < shown["mask"] / total < 0.89
