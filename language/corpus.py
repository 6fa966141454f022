"""Text corpora as documents of sentences.

Formats: the BERT pretraining format (one sentence per line, a blank line between documents),
plain text files (paragraphs split into sentences), and HuggingFace ``datasets`` saved with
``save_to_disk``. Readers are generators, so a corpus larger than memory streams through.

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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path} is not UTF-8 (byte {e.start}: {e.reason}); convert it, e.g. "
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
        with open(f, encoding="utf-8") as fh:
            try:
                for line in fh:
                    line = line.strip()
                    if line:
                        sentences.append(line)
                    elif sentences:
                        yield Document(sentences)
                        sentences = []
            except UnicodeDecodeError as e:
                raise CorpusError(f"{f} is not UTF-8 ({e.reason}); convert it to UTF-8 first") from None
        if sentences:
            yield Document(sentences)


def read_plain_text(path: str | Path) -> Iterator[Document]:
    """Plain text: each file is a document, split into sentences."""
    for f in _files(Path(path)):
        sentences = split_sentences(_read_text(f))
        if sentences:
            yield Document(sentences, topic=f.stem)


def read_hf_dataset(path: str | Path, text_field: str = "text", topic_field: str = "") -> Iterator[Document]:
    """A dataset saved with ``datasets.Dataset.save_to_disk``; each row's text is a document."""
    import datasets
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"dataset folder not found: {path}")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise CorpusError(f"{path} is not a dataset saved with save_to_disk ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if text_field not in ds.column_names:
        raise CorpusError(f"{path} has no column '{text_field}'; columns: {', '.join(ds.column_names)} "
                          "(set task.corpus.text_field)")
    for row in ds:   # arrow-backed and memory-mapped: rows stream from disk
        sentences = split_sentences(row[text_field] or "")
        if sentences:
            yield Document(sentences, topic=str(row[topic_field]) if topic_field else "")


# ------------------------------------------------------------------------------- embedded stdlib corpus


def _stdlib_docstrings(root: Path) -> Iterator[tuple[str, str]]:
    for f in sorted(root.rglob("*.py")):
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


def split_documents(docs: list[Document], valid_fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """Document-level split: no document's sentences appear on both sides."""
    import random
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    k = max(1, int(len(docs) * valid_fraction))
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
