"""Tiny randomly initialised encoders saved in each library's own format, for the encoder-spec tests (seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = ["the cat sat on the mat", "a red dog ran in the park", "the big blue ball", "two small green birds",
             "a cat and a dog", "the park is big and green"] * 4
HF_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                 patch_size=8)
HF_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=40)
OPEN_CLIP_CFG = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def timm_folder(root: Path, arch: str = "vit") -> Path:
    """timm's hub layout (config.json + model.safetensors, as timm.models.save_for_hf writes it)."""
    import timm
    from timm.models import save_for_hf
    torch.manual_seed(0)
    if arch == "vit":
        model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2,
                                  num_heads=2, num_classes=0)
    else:
        model = timm.create_model(arch, num_classes=0)
    save_for_hf(model, str(root), safe_serialization=True)
    return root


def hf_vision(root: Path, kind: str) -> Path:
    """A transformers vision model + its image processor, saved with save_pretrained."""
    import transformers as T
    torch.manual_seed(0)
    processors = {"vit": T.ViTImageProcessor(size={"height": 32, "width": 32}),
                  "crop": T.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}),
                  "clip": T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  "siglip": T.SiglipImageProcessor(size={"height": 32, "width": 32})}
    configs = {"vit": (T.ViTConfig(**HF_VISION), "vit"), "vit_mae": (T.ViTMAEConfig(**HF_VISION), "vit"),
               "vit_msn": (T.ViTMSNConfig(**HF_VISION), "vit"), "dinov2": (T.Dinov2Config(**HF_VISION), "crop"),
               "dinov2_with_registers": (T.Dinov2WithRegistersConfig(**HF_VISION, num_register_tokens=2), "crop"),
               "data2vec-vision": (T.Data2VecVisionConfig(**HF_VISION), "siglip"),
               "beit": (T.BeitConfig(**HF_VISION, use_mean_pooling=False), "siglip"),
               "clip_vision_model": (T.CLIPVisionConfig(**HF_VISION), "clip"),
               "siglip_vision_model": (T.SiglipVisionConfig(**HF_VISION), "siglip")}
    config, processor = configs[kind]
    T.AutoModel.from_config(config).save_pretrained(root)
    processors[processor].save_pretrained(root)
    return root


def wordpiece(root: Path):
    from language.tokenizer import train_wordpiece
    return train_wordpiece(SENTENCES, 60, root)


def hf_text(root: Path, kind: str) -> Path:
    """A transformers text model + a WordPiece tokenizer trained on a few sentences, saved with save_pretrained."""
    import transformers as T
    torch.manual_seed(0)
    tok = wordpiece(root)
    common = dict(HF_TEXT, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    configs = {"bert": T.BertConfig(**common), "electra": T.ElectraConfig(**common, embedding_size=16),
               "roberta": T.RobertaConfig(**{**common, "max_position_embeddings": 41})}   # positions start after pad
    T.AutoModel.from_config(configs[kind]).save_pretrained(root)
    return root


def hf_clip(root: Path, kind: str = "clip") -> Path:
    """A whole CLIP / SigLIP model (both towers) with an image processor and a tokenizer."""
    import transformers as T
    torch.manual_seed(0)
    tok = wordpiece(root)
    text = dict(HF_TEXT, vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                bos_token_id=tok.cls_token_id)
    if kind == "clip":
        config = T.CLIPConfig(text_config=text, vision_config=HF_VISION, projection_dim=16)
        processor = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        config = T.SiglipConfig(text_config=text, vision_config=HF_VISION)
        processor = T.SiglipImageProcessor(size={"height": 32, "width": 32})
    T.AutoModel.from_config(config).save_pretrained(root)
    processor.save_pretrained(root)
    return root


def open_clip_model(root: Path):
    """(config JSON, weights .safetensors, local-dir folder) of one tiny open_clip model, and the model itself."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file
    root.mkdir(parents=True, exist_ok=True)
    cfg_file = root / "tinyclip.json"
    cfg_file.write_text(json.dumps(OPEN_CLIP_CFG))
    open_clip.add_model_config(cfg_file)
    torch.manual_seed(0)
    model = open_clip.create_model("tinyclip").eval()
    weights = root / "tinyclip.safetensors"
    save_file(model.state_dict(), weights)
    folder = root / "hub-layout"                   # open_clip's own folder format (hf-hub / local-dir)
    folder.mkdir()
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    save_config_for_hf(model, folder / "open_clip_config.json", OPEN_CLIP_CFG)
    return cfg_file, weights, folder, model
