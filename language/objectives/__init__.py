"""Pretraining objectives, one file each, on the `bert` task's tokenizer, corpora, trainer and evaluation
(the interface: objectives/common.py)."""
from __future__ import annotations

from selfsup.config import ConfigError

from .common import Objective
from .data2vec import Data2Vec
from .electra import Electra
from .mlm import MLM

OBJECTIVES: dict[str, type[Objective]] = {"mlm+nsp": MLM, "mlm+sop": MLM, "mlm": MLM, "electra": Electra,
                                         "data2vec": Data2Vec}


def make_objective(cfg) -> Objective:
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"task.objective must be one of {', '.join(OBJECTIVES)}, not '{cfg.objective}'")
    return OBJECTIVES[cfg.objective](cfg)
