"""Text corpora as documents of sentences.

Formats:
- ``bert``: google-research/bert's pretraining format: one sentence per line, a blank line between documents.
- ``text``: plain text, a file or a folder of ``.txt`` files, cut into documents by ``split``:
    ``paragraphs`` (default): blank-line-separated paragraphs (e.g. Tiny Shakespeare's speeches), consecutive
                  ones grouped until a document holds at least ``doc_chars`` characters, so that next-sentence
                  pairs and the held-out split have documents of several sentences to work with;
    ``chunks``:   fixed-size pieces of ``doc_chars`` characters (cut at whitespace), for text without blank lines;
    ``file``:     each file is one document.
  Lines are streamed, so one file larger than memory is fine (``file`` excepted).
- ``hf``: a ``datasets`` dataset: a folder saved with ``save_to_disk``, local parquet / json(l) / csv files, or a
  dataset by name (``NAME`` or ``hf:NAME``, not an existing path: its ``train`` split, from the local datasets
  cache, downloaded only with ``task.corpus.download=true``); each row's text is a document.

Every reader is a generator, so a corpus larger than memory streams through.

Embedded default (no download): docstrings of Python's own standard library, read with ``ast``
from the installed source files (no module is imported), plus the language-reference topics
shipped in ``pydoc_data``; one document per docstring/topic, deduplicated, each labelled with the
stdlib package it came from (the topic probe's label).
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from selfsup.errors import UserError
from selfsup.hub import hub_dataset
from selfsup.io import atomic_write_text


class CorpusError(UserError, ValueError):
    """A missing, empty or unreadable corpus."""


@dataclass
class Document:
    sentences: list[str]
    topic: str = ""        # e.g. the stdlib package; "" when unknown


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph-structured text: split at . ! ? followed by a capital, and at blank lines."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        out += [s.strip() for s in _SENTENCE_END.split(para) if s.strip()]
    return out


SPLITS = ("paragraphs", "chunks", "file")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path} is not UTF-8 (byte {e.start}: {e.reason}); convert it, e.g. "
                          f"`iconv -f latin1 -t utf-8 {path.name}`") from None


def _lines(path: Path) -> Iterator[str]:
    """A file's lines, streamed from disk."""
    with open(path, encoding="utf-8") as fh:
        try:
            yield from fh
        except UnicodeDecodeError as e:
            raise CorpusError(f"{path} is not UTF-8 ({e.reason}); convert it, e.g. "
                              f"`iconv -f latin1 -t utf-8 {path.name}`") from None


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise CorpusError(f"corpus not found: {path}")
    files = sorted(p for p in path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise CorpusError(f"{path} holds no .txt files")
    return files


def read_bert_format(path: str | Path) -> Iterator[Document]:
    """One sentence per line, blank line between documents (google-research/bert's input format)."""
    for f in _files(Path(path)):
        sentences: list[str] = []
        for line in _lines(f):
            line = line.strip()
            if line:
                sentences.append(line)
            elif sentences:
                yield Document(sentences)
                sentences = []
        if sentences:
            yield Document(sentences)


def paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Blank-line-separated paragraphs of a stream of lines."""
    para: list[str] = []
    for line in lines:
        if line.strip():
            para.append(line)
        elif para:
            yield "".join(para)
            para = []
    if para:
        yield "".join(para)


def chunks(lines: Iterable[str], size: int) -> Iterator[str]:
    """Pieces of about ``size`` characters, each cut at the last whitespace before the limit."""
    buf = ""
    for line in lines:
        buf += line
        while len(buf) >= size:
            cut = max(buf.rfind(" ", 0, size), buf.rfind("\n", 0, size))
            cut = cut if cut > 0 else size
            yield buf[:cut]
            buf = buf[cut:].lstrip()
    if buf.strip():
        yield buf


def read_plain_text(path: str | Path, split: str = "paragraphs", doc_chars: int = 2000) -> Iterator[Document]:
    """Plain text files cut into documents (see the module docstring for ``split``); topic = the file's name."""
    if split not in SPLITS:
        raise CorpusError(f"unknown task.corpus.split '{split}'; choose {', '.join(SPLITS)}")
    if doc_chars < 1:
        raise CorpusError(f"task.corpus.doc_chars must be positive, not {doc_chars}")
    for f in _files(Path(path)):
        if split == "file":
            sentences = split_sentences(_read_text(f))
            if sentences:
                yield Document(sentences, topic=f.stem)
            continue
        if split == "chunks":
            for piece in chunks(_lines(f), doc_chars):
                yield Document(split_sentences(piece), topic=f.stem)
            continue
        group: list[str] = []
        size = 0
        for para in paragraphs(_lines(f)):
            group += split_sentences(para)        # a paragraph ends its last sentence
            size += len(para)
            if size >= doc_chars:
                yield Document(group, topic=f.stem)
                group, size = [], 0
        if group:
            yield Document(group, topic=f.stem)


DATA_FILES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def load_hf_dataset(path: str | Path, download: bool = False):
    """A ``datasets.Dataset`` from a ``save_to_disk`` folder, from local parquet / json(l) / csv files (one file,
    or a folder of them), or — a name that is no existing path — the ``train`` split of a dataset by name
    (``selfsup.hub.hub_dataset``: from the local datasets cache, downloaded only with ``download``); a DatasetDict
    gives its ``train`` split."""
    import datasets
    name = str(path).removeprefix("hf:")
    path = Path(name).expanduser()
    if not path.exists():
        if name.startswith((".", "/", "~")) or name.endswith(tuple(DATA_FILES)):
            raise CorpusError(f"dataset not found: {path}")
        return hub_dataset(name, split="train", download=download, download_key="task.corpus.download")
    files = sorted(f for f in path.rglob("*") if f.suffix in DATA_FILES) if path.is_dir() else [path]
    saved = path.is_dir() and any((path / m).is_file() for m in ("dataset_info.json", "state.json",
                                                                  "dataset_dict.json"))
    try:
        if saved:
            ds = datasets.load_from_disk(str(path))
        elif files and len({DATA_FILES.get(f.suffix) for f in files}) == 1 and files[0].suffix in DATA_FILES:
            ds = datasets.load_dataset(DATA_FILES[files[0].suffix], data_files=[str(f) for f in files],
                                       split="train")
        else:
            raise CorpusError(f"{path} is neither a folder saved with save_to_disk nor parquet / json(l) / csv "
                              "files of one kind")
    except CorpusError:
        raise
    except Exception as e:
        raise CorpusError(f"cannot read {path} with datasets ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return ds


def read_hf_dataset(path: str | Path, text_field: str = "text", topic_field: str = "",
                    download: bool = False) -> Iterator[Document]:
    """Each row's text is a document (rows stream from the memory-mapped arrow files)."""
    ds = load_hf_dataset(path, download)
    for name in (text_field, topic_field):
        if name and name not in ds.column_names:
            raise CorpusError(f"{path} has no column '{name}'; columns: {', '.join(ds.column_names)} "
                              f"(set task.corpus.{'text' if name == text_field else 'topic'}_field)")
    for row in ds:
        sentences = split_sentences(row[text_field] or "")
        if sentences:
            yield Document(sentences, topic=str(row[topic_field]) if topic_field else "")


# ------------------------------------------------------------------------------- embedded stdlib corpus


def _stdlib_docstrings(root: Path) -> Iterator[tuple[str, str]]:
    from selfsup.progress import progress
    files = sorted(root.rglob("*.py"))
    for f in progress(files, desc="stdlib corpus (first run, cached after)", unit="file"):
        rel = f.relative_to(root)
        if (rel.parts[0] in ("site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo")
                or "test" in rel.parts):
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        topic = rel.parts[0].removesuffix(".py")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc, topic


def _pydoc_topics(root: Path) -> Iterator[tuple[str, str]]:
    f = root / "pydoc_data" / "topics.py"
    if not f.is_file():
        return
    tree = ast.parse(f.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "topics":
            for text in ast.literal_eval(node.value).values():
                yield text, "language-reference"


def stdlib_corpus(cache_dir: Path | None = None, min_sentences: int = 1) -> list[Document]:
    """The embedded corpus, built once per Python installation and cached as JSON."""
    root = Path(sysconfig.get_paths()["stdlib"])
    key = hashlib.sha256(f"{root}|{sorted(p.name for p in root.iterdir())}|v1".encode()).hexdigest()[:12]
    cache = (cache_dir or default_cache()) / f"stdlib-corpus-{key}.json"
    if cache.is_file():
        rows = json.loads(cache.read_text())
    else:
        seen, rows = set(), []
        for text, topic in list(_stdlib_docstrings(root)) + list(_pydoc_topics(root)):
            sentences = split_sentences(text)
            norm = " ".join(sentences)
            if sentences and norm not in seen:
                seen.add(norm)
                rows.append({"sentences": sentences, "topic": topic})
        if not rows:
            raise CorpusError(f"no docstrings found under {root}: is the standard library's source installed?")
        atomic_write_text(cache, json.dumps(rows))
    return [Document(r["sentences"], r["topic"]) for r in rows if len(r["sentences"]) >= min_sentences]


def default_cache() -> Path:
    import os
    return Path(os.environ.get("SELFSUP_CACHE", Path.home() / ".cache" / "selfsup"))


def split_documents(docs: list[Document], valid_fraction: float, seed: int,
                    what: str = "the corpus") -> tuple[list[Document], list[Document]]:
    """Document-level split: no document's sentences appear on both sides. Both sides must hold a document."""
    import random
    if not 0 < valid_fraction < 1:
        raise CorpusError(f"task.corpus.valid_fraction must lie between 0 and 1, not {valid_fraction}")
    n = len(docs)
    k = max(1, int(n * valid_fraction))
    if n - k < 1:
        chars = sum(len(s) for d in docs for s in d.sentences)
        raise CorpusError(
            f"{what} has {n} document{'s' * (n != 1)} ({chars:,} characters): holding out "
            f"task.corpus.valid_fraction={valid_fraction} ({k} document{'s' * (k != 1)}) leaves {n - k} for "
            "training. Cut it into more documents (task.corpus.split=paragraphs or chunks with a smaller "
            "task.corpus.doc_chars) or add text.")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [docs[i] for i in order[k:]], [docs[i] for i in order[:k]]


def keep_nsp_documents(docs: Iterable[Document], what: str) -> list[Document]:
    """NSP needs two sentences in a document; drop shorter ones and say how many."""
    docs = list(docs)
    if not docs:
        raise CorpusError(f"{what} is empty: no documents with text")
    kept = [d for d in docs if len(d.sentences) >= 2]
    if len(kept) < len(docs):
        warnings.warn(f"{what}: dropped {len(docs) - len(kept)} of {len(docs)} documents with fewer than two "
                      "sentences (next-sentence prediction needs two)")
    if len(kept) < 2:
        raise CorpusError(f"{what} has {len(kept)} documents with two or more sentences; NSP needs at least 2 "
                          "(use task.objective=mlm for single-sentence text)")
    return kept
