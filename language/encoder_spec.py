"""Our language exports as encoder specs: the ``language`` reader of the ``selfsup.encoders`` entry-point group.
``selfsup export bert`` writes a transformers folder (config, weights, tokenizer), so a bare export path loads as
``hf:PATH`` would; a run folder is not an encoder until exported (its tokenizer lives in the corpus cache)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from selfsup.encoders import EncoderError, parse_spec
from selfsup.encoders.hf_encoder import HFTextEncoder, load_hf_text


def resolve(path: Path, kind: str, pretrained: bool = True) -> HFTextEncoder | None:
    if kind != "text":
        return None
    if (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file():
        enc = load_hf_text(parse_spec(f"hf:{path}"), pretrained)
        enc.spec, enc.family = str(path), "selfsup"
        return enc
    if (path / "config.yaml").is_file() and "corpus" in OmegaConf.load(path / "config.yaml").get("task", {}):
        raise EncoderError(f"{path} is a training run; export its encoder first: "
                           f"selfsup export bert --checkpoint {path} --out EXPORT_DIR, then use EXPORT_DIR")
    return None
