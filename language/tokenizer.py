"""WordPiece tokenizers: trained on a corpus with the `tokenizers` library, saved and loaded as a
transformers fast-tokenizer directory (so `AutoTokenizer.from_pretrained(dir)` reads it), or an
existing local tokenizer directory. A tokenizer also travels as a dict of its files (``tokenizer_files``),
which is how a run keeps the tokenizer it trained on beside its checkpoints."""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast

from selfsup.errors import UserError

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class TokenizerError(UserError, ValueError):
    pass


def train_wordpiece(sentences: Iterable[str], vocab_size: int, out_dir: Path, lowercase: bool = True,
                    length: int | None = None) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=2,
                                        continuing_subword_prefix="##",
                                        show_progress=sys.stderr.isatty())   # the library's own bars, on a terminal
    tok.train_from_iterator(sentences, trainer=trainer, length=length)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not path.is_dir():
        raise TokenizerError(f"tokenizer folder not found: {path}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise TokenizerError(f"{path} is not a tokenizer folder transformers can load "
                             f"({type(e).__name__}: {e})") from None
    missing = [t for t in ("cls_token", "sep_token", "mask_token", "pad_token") if getattr(tok, t) is None]
    if missing:
        raise TokenizerError(f"tokenizer at {path} lacks {', '.join(missing)}; "
                             "BERT pretraining needs [CLS] [SEP] [MASK] [PAD]")
    return tok


def corpus_tokenizer(sentences: list[str], vocab_size: int, cache: Path) -> PreTrainedTokenizerFast:
    """Train once per (corpus, vocab size); later runs load the same tokenizer from the cache."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode())
        h.update(b"\n")
    out = cache / f"wordpiece-{vocab_size}-{h.hexdigest()[:12]}"
    if (out / "tokenizer.json").is_file():
        return load_tokenizer(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    train_wordpiece(sentences, vocab_size, tmp, length=len(sentences))
    try:
        tmp.rename(out)            # atomic: a concurrent run that got there first keeps its (identical) copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_tokenizer(out)


def save_tokenizer(tok: PreTrainedTokenizerFast, out_dir: Path, max_len: int) -> None:
    """Save for transformers with ``model_max_length`` set to the model's positions, so that pipelines truncate
    long input instead of overflowing the position embeddings."""
    tok.model_max_length = max_len
    tok.save_pretrained(str(out_dir))


def tokenizer_files(tok: PreTrainedTokenizerFast) -> dict[str, str]:
    """The tokenizer as {file name: text}: plain strings, safe to keep in a checkpoint's state."""
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        return {f.name: f.read_text(encoding="utf-8") for f in Path(d).iterdir() if f.is_file()}


def tokenizer_from_files(files: dict[str, str]) -> PreTrainedTokenizerFast:
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            if Path(name).name != name:
                raise TokenizerError(f"unexpected tokenizer file name '{name}' in a checkpoint's state")
            (Path(d) / name).write_text(text, encoding="utf-8")
        return load_tokenizer(d)
