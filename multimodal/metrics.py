"""Caption metrics with pycocoevalcap's scorers: BLEU-1..4, ROUGE-L, CIDEr-D, METEOR.

Tokenisation: the Stanford PTB tokenizer shipped with pycocoevalcap when Java is present (as the
COCO server does); otherwise a documented regex tokenizer (lower-case, drop punctuation, split on
whitespace, the PTB tokenizer's effect on plain captions). Which one was used is reported.
CIDEr-D's document frequencies are frozen from the *training* references, so an image's score does
not depend on which other images are evaluated with it. METEOR needs Java; SPICE needs Stanford
models downloaded at first use, so it is reported as unavailable offline rather than skipped silently.
"""
from __future__ import annotations

import math
import re
import shutil
from collections import defaultdict

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider_scorer import CiderScorer
from pycocoevalcap.rouge.rouge import Rouge

_PUNCT = re.compile(r"[^\w\s]")


def regex_tokenize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def have_java() -> bool:
    return shutil.which("java") is not None


def tokenize(captions: dict[str, list[str]], use_ptb: bool) -> dict[str, list[str]]:
    if use_ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
        return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    return {k: [regex_tokenize(c) for c in v] for k, v in captions.items()}


class _FrozenCider(CiderScorer):
    """CIDEr-D with document frequencies (and corpus size) fixed in advance."""

    def __init__(self, df, log_num_docs: float):
        self._log_num_docs = log_num_docs
        super().__init__(n=4, sigma=6.0)
        self.document_frequency = df

    ref_len = property(lambda self: self._log_num_docs, lambda self, value: None)

    def compute_doc_freq(self):
        pass


class CaptionScorer:
    def __init__(self, train_refs: list[list[str]], use_ptb: bool | None = None):
        self.use_ptb = have_java() if use_ptb is None else use_ptb
        self.tokenizer_name = "ptb" if self.use_ptb else "regex"
        refs = tokenize({str(i): r for i, r in enumerate(train_refs)}, self.use_ptb)
        counter = CiderScorer(n=4, sigma=6.0)
        for r in refs.values():
            counter += (r[0], r)
        counter.compute_doc_freq()
        self.df = defaultdict(float, counter.document_frequency)
        self.log_num_docs = math.log(float(len(refs)))

    def score(self, hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
        keys = [str(i) for i in range(len(hypotheses))]
        res = tokenize(dict(zip(keys, [[h] for h in hypotheses])), self.use_ptb)
        gts = tokenize(dict(zip(keys, references)), self.use_ptb)
        out = {}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"bleu{i + 1}": b for i, b in enumerate(bleu)})
        out["rouge_l"], _ = Rouge().compute_score(gts, res)
        cider = _FrozenCider(self.df, self.log_num_docs)
        for k in keys:
            cider += (res[k][0], gts[k])
        out["cider_d"] = float(sum(cider.compute_cider()) / len(keys))
        if self.use_ptb:
            from pycocoevalcap.meteor.meteor import Meteor
            out["meteor"], _ = Meteor().compute_score(gts, res)   # its Java process ends with the object
        return {k: float(v) for k, v in out.items()}

    def unavailable(self) -> dict[str, str]:
        why = {"spice": "SPICE downloads Stanford CoreNLP models at first use; no network here"}
        if not self.use_ptb:
            why["meteor"] = "METEOR runs on Java, which is not installed"
        return why
