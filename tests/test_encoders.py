"""Encoder specs: every kind of spec loads a tiny, randomly initialised model saved in its library's own format and
gives the features and the preprocessing that the library itself gives; training modes; offline errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.encoders import EncoderError, ImagePreprocess, describe, load_image_encoder, load_text_encoder, parse_spec

import tiny_encoders as tiny

HF_VISION_KINDS = ["vit", "vit_mae", "vit_msn", "dinov2", "dinov2_with_registers", "data2vec-vision", "beit",
                   "clip_vision_model", "siglip_vision_model"]


def smooth_image(h=47, w=61, seed=0) -> Image.Image:
    """A smooth random RGB image (real images are smooth; noise exaggerates resampling differences)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8))
    return small.resize((w, h), Image.BICUBIC)


def as_uint8(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]


def images(n=3, h=40, w=50):
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------------ specs


def test_spec_forms(tmp_path):
    (tmp_path / "tv").mkdir()
    assert parse_spec("runs/mae").library == "ours"
    assert parse_spec("timm:vit_small_patch14_dinov2.lvd142m").name == "vit_small_patch14_dinov2.lvd142m"
    assert parse_spec(f"timm:{tmp_path / 'tv'}").name == f"local-dir:{tmp_path / 'tv'}"
    assert parse_spec("timm:hf-hub:timm/vit_tiny").name == "hf-hub:timm/vit_tiny"
    assert parse_spec("hf:facebook/vit-mae-base") == parse_spec("hf:facebook/vit-mae-base")
    s = parse_spec("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert (s.library, s.name, s.weights) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert parse_spec("open_clip:hf-hub:timm/ViT-B-16-SigLIP").name == "hf-hub:timm/ViT-B-16-SigLIP"
    assert parse_spec(f"open_clip:{tmp_path / 'tv'}").name == f"local-dir:{tmp_path / 'tv'}"
    for bad, msg in [("", "empty encoder spec"), ("timm:", "names no model"), ("openclip:ViT-B-32", "unknown encoder")]:
        with pytest.raises(EncoderError, match=msg):
            parse_spec(bad)


def test_unknown_models_and_folders_say_what_to_do(tmp_path):
    with pytest.raises(EncoderError, match="no such run or export folder"):
        load_image_encoder(str(tmp_path / "nope"))
    with pytest.raises(EncoderError, match="timm has no model 'not_a_model'"):
        load_image_encoder("timm:not_a_model")
    with pytest.raises(EncoderError, match="config.json not found; a timm model folder"):
        load_image_encoder(f"timm:{tmp_path}")
    with pytest.raises(EncoderError, match="open_clip has no architecture"):
        load_image_encoder("open_clip:ViT-Nope")
    with pytest.raises(EncoderError, match="names no weights: add a pretrained tag"):
        load_image_encoder("open_clip:ViT-B-32")
    with pytest.raises(EncoderError, match="timm models are image encoders"):
        load_text_encoder("timm:vit_tiny_patch16_224")
    folder = tiny.timm_folder(tmp_path / "timm")
    with pytest.raises(EncoderError, match=f"looks like a timm folder: use timm:{folder}"):
        load_image_encoder(str(folder))


# ------------------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("mode", ["center", "squash", "border"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [(47, 61), (20, 14)])       # down- and up-sampling
def test_preprocess_matches_timm_create_transform(mode, interpolation, size):
    from timm.data import create_transform
    cfg = dict(input_size=(3, 32, 32), interpolation=interpolation, mean=(0.485, 0.456, 0.406),
               std=(0.229, 0.224, 0.225), crop_pct=0.9, crop_mode=mode)
    img = smooth_image(*size)
    ours, theirs = ImagePreprocess.from_timm(cfg)(as_uint8(img))[0], create_transform(**cfg)(img)
    assert ours.shape == theirs.shape == (3, 32, 32)
    # PIL (theirs) and torch (ours) resample alike; uint8 rounding leaves at most one grey level per pixel
    assert (ours - theirs).abs().mean() < 2e-3 and (ours - theirs).abs().max() < 2.5 / 255 / 0.224


@pytest.mark.parametrize("kind", ["vit", "crop", "clip", "siglip"])
def test_preprocess_matches_transformers_image_processors(kind):
    import transformers as T
    processor = {"vit": T.ViTImageProcessor(size={"height": 32, "width": 32}),
                 "crop": T.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}),
                 "clip": T.CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}),
                 "siglip": T.SiglipImageProcessor(size={"height": 24, "width": 32})}[kind]
    img = smooth_image()
    ours = ImagePreprocess.from_hf(processor, 32, "test")(as_uint8(img))[0]
    theirs = processor(img, return_tensors="pt").pixel_values[0]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 2e-3 and (ours - theirs).abs().max() < 2.5 / 255 / 0.26


@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
def test_preprocess_matches_open_clip_image_transform(resize_mode):
    from open_clip.transform import image_transform
    cfg = dict(size=32, mean=(0.48, 0.45, 0.4), std=(0.26, 0.26, 0.27), interpolation="bicubic",
               resize_mode=resize_mode, fill_color=0)
    img = smooth_image()
    ours = ImagePreprocess.from_open_clip(cfg)(as_uint8(img))[0]
    theirs = image_transform(32, False, cfg["mean"], cfg["std"], resize_mode, "bicubic", 0)(img)
    assert ours.shape == theirs.shape == (3, 32, 32)
    assert (ours - theirs).abs().mean() < 2e-3 and (ours - theirs).abs().max() < 2.5 / 255 / 0.26


def test_preprocess_record_and_pass_through():
    pre = ImagePreprocess.from_timm(dict(input_size=(3, 32, 32), interpolation="lanczos", mean=(0.5,) * 3,
                                         std=(0.5,) * 3, crop_pct=0.875, crop_mode="center"))
    d = pre.to_dict()
    assert d["resize_size"] == [36, 36] and d["crop_pct"] == 0.875 and d["interpolation"] == "bicubic"
    assert "lanczos" in d["notes"][0]                     # what was adapted is recorded, not hidden
    x = images(2, 40, 64)
    assert pre.resize(x).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8 batch"):
        pre.resize(x.float())


# ------------------------------------------------------------------------------------------------ timm


def test_timm_folder_features_and_preprocessing_are_timms(tmp_path):
    import timm
    from timm.data import resolve_data_config
    folder = tiny.timm_folder(tmp_path / "tv")
    enc = load_image_encoder(f"timm:{folder}")
    ref = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert enc.preprocess == ImagePreprocess.from_timm(resolve_data_config({}, model=ref))
    x = images()
    out, pixels = enc(x), enc.prepare(x)
    assert pixels.shape == (3, 3, 32, 32)
    ff = ref.forward_features(pixels)
    torch.testing.assert_close(out["cls"], ff[:, 0])
    torch.testing.assert_close(out["tokens"], ff[:, 1:])
    torch.testing.assert_close(out["mean"], ff[:, 1:].mean(1))
    torch.testing.assert_close(enc.forward_features(x), ff)
    assert enc.cls_source == "token" and enc.embed_dim == 32 and describe(enc)["encoder"] == f"timm:{folder}"


def test_timm_cnn_tokens_and_pooled_feature(tmp_path):
    import timm
    folder = tiny.timm_folder(tmp_path / "cnn", arch="test_resnet")
    enc = load_image_encoder(f"timm:{folder}")
    ref = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = enc.prepare(images())
    out, fmap = enc(x), ref.forward_features(x)                      # (B, C, H, W)
    assert enc.cls_source == "pooler" and enc.num_prefix_tokens == 0
    torch.testing.assert_close(out["cls"], ref.forward_head(fmap, pre_logits=True))
    torch.testing.assert_close(out["tokens"], fmap.flatten(2).transpose(1, 2))


# ------------------------------------------------------------------------------------------------ transformers


def _library_cls(model, out, kind):
    if kind in ("clip_vision_model", "siglip_vision_model"):
        return out.pooler_output
    if kind == "data2vec-vision":                 # mean pooling: its own feature is the mean of the patch tokens
        return out.last_hidden_state[:, 1:].mean(1)
    return out.last_hidden_state[:, 0]


@pytest.mark.parametrize("kind", HF_VISION_KINDS)
def test_hf_vision_models_give_the_librarys_features(tmp_path, kind):
    import transformers as T
    folder = tiny.hf_vision(tmp_path / kind, kind)
    enc = load_image_encoder(f"hf:{folder}")
    ref = T.AutoModel.from_pretrained(folder, **({"mask_ratio": 0.0} if kind == "vit_mae" else {})).eval()
    processor = T.AutoImageProcessor.from_pretrained(folder)
    assert enc.preprocess == ImagePreprocess.from_hf(processor, 32, enc.preprocess.source)
    x = images()
    pixels = enc.prepare(x)
    kw = {"noise": torch.arange(16.0).expand(3, 16)} if kind == "vit_mae" else {}
    theirs = ref(pixel_values=pixels, **kw)
    out = enc(x)
    torch.testing.assert_close(out["cls"], _library_cls(ref, theirs, kind))
    prefix = {"siglip_vision_model": 0, "dinov2_with_registers": 3}.get(kind, 1)
    assert out["tokens"].shape == (3, 16, 32) and enc.num_prefix_tokens == prefix
    torch.testing.assert_close(out["tokens"], theirs.last_hidden_state[:, prefix:])


def test_vit_mae_is_unmasked_in_place_and_deterministic(tmp_path):
    import transformers as T
    folder = tiny.hf_vision(tmp_path / "mae", "vit_mae")
    enc = load_image_encoder(f"hf:{folder}")
    x = images()
    a, b = enc(x), enc(x)
    torch.testing.assert_close(a["tokens"], b["tokens"])        # no random shuffling
    assert a["tokens"].shape[1] == 16                            # every patch (mask ratio 0)
    # in place: the same weights in a plain ViT (no masking machinery at all) give the same tokens
    mae = T.ViTMAEModel.from_pretrained(folder)
    vit = T.ViTModel(T.ViTConfig(**tiny.HF_VISION, layer_norm_eps=mae.config.layer_norm_eps), add_pooling_layer=False)
    missing, unexpected = vit.load_state_dict(mae.state_dict(), strict=False)
    assert not unexpected and not missing
    pos = mae.embeddings.position_embeddings.detach()           # ViTMAE's fixed sin-cos table
    vit.embeddings.position_embeddings.data.copy_(pos)
    torch.testing.assert_close(a["tokens"], vit.eval()(pixel_values=enc.prepare(x)).last_hidden_state[:, 1:])


@pytest.mark.parametrize("kind", ["bert", "electra", "roberta"])
def test_hf_text_models_tokenize_and_pool_like_the_library(tmp_path, kind):
    import transformers as T
    folder = tiny.hf_text(tmp_path / kind, kind)
    enc = load_text_encoder(f"hf:{folder}")
    batch = enc.tokenize(["the cat sat on the mat", "a dog"])
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()     # padded to the longest
    out = enc(**batch)
    hidden = T.AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state
    torch.testing.assert_close(out["cls"], hidden[:, 0])
    m = batch["attention_mask"][1].bool()
    torch.testing.assert_close(out["mean"][1], hidden[1, m].mean(0))               # padding left out
    assert enc.max_length == 40 and enc.preprocess.max_length == 40                 # RoBERTa: 41 - (pad id 0 + 1)
    long = enc.tokenize([" ".join(["cat"] * 100)])
    assert long["input_ids"].shape[1] == 40
    assert load_text_encoder(f"hf:{folder}", max_length=8).tokenize(["a " * 20])["input_ids"].shape[1] == 8


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_clip_like_models_give_either_tower(tmp_path, kind):
    import transformers as T
    folder = tiny.hf_clip(tmp_path / kind, kind)
    ref = T.AutoModel.from_pretrained(folder).eval()
    img, txt = load_image_encoder(f"hf:{folder}"), load_text_encoder(f"hf:{folder}")
    x = images()
    torch.testing.assert_close(img(x)["cls"], ref.vision_model(pixel_values=img.prepare(x)).pooler_output)
    batch = txt.tokenize(["a red dog", "the cat sat on the mat"])
    torch.testing.assert_close(txt(**batch)["cls"], ref.text_model(**batch).pooler_output)
    assert img.cls_source == txt.cls_source == "pooler"


def test_hf_folder_without_image_processor_uses_recorded_defaults(tmp_path):
    import transformers as T
    T.ViTModel(T.ViTConfig(**tiny.HF_VISION)).save_pretrained(tmp_path / "bare")
    enc = load_image_encoder(f"hf:{tmp_path / 'bare'}")
    pre = describe(enc)["preprocess"]
    assert pre["source"] == "defaults" and "no preprocessor_config.json" in pre["notes"][0]
    assert pre["input_size"] == [32, 32] and enc(images())["cls"].shape == (3, 32)


def test_hf_image_and_text_models_refuse_the_other_kind(tmp_path):
    vit, bert = tiny.hf_vision(tmp_path / "vit", "vit"), tiny.hf_text(tmp_path / "bert", "bert")
    with pytest.raises(EncoderError, match="'vit' image model"):
        load_text_encoder(f"hf:{vit}")
    with pytest.raises(EncoderError, match="is a 'bert' model, not an image model"):
        load_image_encoder(f"hf:{bert}")


# ------------------------------------------------------------------------------------------------ open_clip


def test_open_clip_towers_from_config_and_weights_file_and_folder(tmp_path):
    cfg_file, weights, folder, model = tiny.open_clip_model(tmp_path)
    x = images()
    for spec in (f"open_clip:{cfg_file}:{weights}", f"open_clip:{folder}"):
        img = load_image_encoder(spec)
        out = img(x)
        # the pooled feature before the projection is what open_clip projects into the joint space
        torch.testing.assert_close(out["cls"] @ model.visual.proj, model.encode_image(img.prepare(x)))
        assert out["tokens"].shape == (3, 16, 32)
        txt = load_text_encoder(spec)
        batch = txt.tokenize(["a photo of a cat", "a dog"])
        assert batch["input_ids"].shape == (2, 16) and txt.max_length == 16
        torch.testing.assert_close(txt(**batch)["cls"] @ model.text_projection, model.encode_text(batch["input_ids"]))
    assert img.preprocess.mean == tuple(model.visual.preprocess_cfg["mean"])


def test_image_size_override_runs_each_library_at_another_resolution(tmp_path):
    import transformers as T
    cfg_file, weights, _, _ = tiny.open_clip_model(tmp_path / "oc")
    vit = tiny.hf_vision(tmp_path / "vit", "vit")
    specs = [f"timm:{tiny.timm_folder(tmp_path / 'timm')}", f"hf:{vit}",
             f"hf:{tiny.hf_vision(tmp_path / 'mae', 'vit_mae')}", f"open_clip:{cfg_file}:{weights}"]
    for spec in specs:
        enc = load_image_encoder(spec, image_size=48)                    # 6 x 6 patches of 8 px instead of 4 x 4
        out = enc(images(2, 70, 90))
        assert out["tokens"].shape == (2, 36, 32), spec
        pre = describe(enc)["preprocess"]
        assert pre["input_size"] == [48, 48] and "image_size override" in pre["notes"][-1], spec
    enc = load_image_encoder(f"hf:{vit}", image_size=48)
    x = enc.prepare(images(2, 70, 90))
    ref = T.ViTModel.from_pretrained(vit).eval()(pixel_values=x, interpolate_pos_encoding=True)
    torch.testing.assert_close(enc(x)["cls"], ref.last_hidden_state[:, 0])


# ------------------------------------------------------------------------------------------------ training modes


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    cfg_file, weights, _, _ = tiny.open_clip_model(root / "oc")
    return {"timm": load_image_encoder(f"timm:{tiny.timm_folder(root / 'timm')}"),
            "hf-vit": load_image_encoder(f"hf:{tiny.hf_vision(root / 'vit', 'vit')}"),
            "hf-clip": load_image_encoder(f"hf:{tiny.hf_vision(root / 'clip', 'clip_vision_model')}"),
            "hf-bert": load_text_encoder(f"hf:{tiny.hf_text(root / 'bert', 'bert')}"),
            "open_clip-image": load_image_encoder(f"open_clip:{cfg_file}:{weights}"),
            "open_clip-text": load_text_encoder(f"open_clip:{cfg_file}:{weights}")}


def _forward(enc):
    if hasattr(enc, "tokenize"):
        return enc(**enc.tokenize(["a cat", "a dog on the mat"]))
    return enc(images(2))


@pytest.mark.parametrize("name", ["timm", "hf-vit", "hf-clip", "hf-bert", "open_clip-image", "open_clip-text"])
def test_freeze_partial_finetune_and_layer_decay(encoders, name):
    enc = encoders[name]
    ids = {n: enc.layer_id(n) for n, _ in enc.named_parameters()}
    assert set(ids.values()) >= set(range(0, enc.depth + 1)) and max(ids.values()) <= enc.depth + 1
    assert enc.depth == 2
    enc.freeze()
    assert not any(p.requires_grad for p in enc.parameters())
    enc.unfreeze(last_k=1)
    enc.zero_grad()
    cls = _forward(enc)["cls"]
    (cls * torch.randn(cls.shape, generator=torch.Generator().manual_seed(0))).sum().backward()   # (LN sums are flat)
    for n, p in enc.named_parameters():
        assert p.requires_grad == (ids[n] >= enc.depth), n            # the last block and what follows it
        if ids[n] < enc.depth:
            assert p.grad is None, n
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in enc.named_parameters() if ids[n] == enc.depth)
    enc.unfreeze()
    groups = enc.param_groups(weight_decay=0.05, layer_decay=0.5)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(set(map(id, grouped))) == sum(1 for _ in enc.parameters())
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    for n, p in enc.named_parameters():
        assert scale[id(p)] == 0.5 ** (enc.depth + 1 - ids[n])
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert all(decay[id(p)] == 0.0 for p in enc.parameters() if p.ndim < 2)          # norms and biases
    with pytest.raises(EncoderError, match="has 2 blocks"):
        enc.unfreeze(last_k=3)
    enc.eval()


def test_pretrained_false_is_the_same_architecture_freshly_initialised(tmp_path):
    folder = tiny.hf_vision(tmp_path / "vit", "vit")
    trained, fresh = load_image_encoder(f"hf:{folder}"), load_image_encoder(f"hf:{folder}", pretrained=False)
    a, b = dict(trained.named_parameters()), dict(fresh.named_parameters())
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert not all(torch.equal(a[k], b[k]) for k in a) and fresh.preprocess == trained.preprocess
    t = tiny.timm_folder(tmp_path / "timm")
    assert not torch.equal(load_image_encoder(f"timm:{t}").model.pos_embed,
                           load_image_encoder(f"timm:{t}", pretrained=False).model.pos_embed)


# ------------------------------------------------------------------------------------------------ offline


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty cache, as on a machine that has never downloaded anything."""
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    return tmp_path / "empty-cache"


@pytest.mark.parametrize("spec, fetch", [
    ("timm:vit_tiny_patch16_224.augreg_in21k",
     "timm.create_model('vit_tiny_patch16_224.augreg_in21k', pretrained=True)"),
    ("hf:facebook/vit-mae-base", "hf download facebook/vit-mae-base"),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip.create_model('ViT-B-32', pretrained='laion2b_s34b_b79k')"),
])
def test_hub_models_offline_say_what_is_missing_and_how_to_fetch_it(offline, spec, fetch):
    with pytest.raises(EncoderError) as e:
        load_image_encoder(spec)
    msg = str(e.value)
    assert "not in the local cache" in msg and str(offline) in msg and "HF_HUB_OFFLINE=1" in msg
    assert fetch in msg and "HF_HOME" in msg
    assert not offline.exists() or not any(offline.rglob("*.safetensors"))          # nothing was downloaded


# ------------------------------------------------------------------------------------------------ raw pixels


def test_pixels_spec_is_the_normalised_image_flattened_and_its_patches():
    enc = load_image_encoder("pixels:8")
    assert parse_spec("pixels").library == parse_spec("pixels:8").library == "pixels"
    x = images(2, 20, 30)
    out = enc(x)
    ref = ImagePreprocess((8, 8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (8, 8), "shortest", "bilinear")(x)
    torch.testing.assert_close(out["cls"], ref.flatten(1))                  # (B, 3*8*8), the whole image
    assert torch.equal(out["mean"], out["cls"]) and enc.embed_dim == 192 and enc.cls_source == "pixels"
    assert out["tokens"].shape == (2, 64, 3) and enc.token_dim == 3 and enc.num_tokens() == 64   # 1-px patches
    torch.testing.assert_close(out["tokens"][:, 8 * 2 + 5], ref[:, :, 2, 5])   # token (row 2, col 5) = that pixel
    big = load_image_encoder("pixels:32")
    tokens = big.forward_features(images(1, 32, 32))
    assert tokens.shape == (1, 64, 48) and big.token_dim == 48                  # an 8x8 grid of 4-px patches
    patch = big.prepare(images(1, 32, 32))[0, :, 4:8, 8:12]                     # row 1, column 2
    torch.testing.assert_close(tokens[0, 8 + 2], patch.permute(1, 2, 0).flatten())
    assert load_image_encoder("pixels").input_size == 32                        # the default size
    assert load_image_encoder("pixels", image_size=16).embed_dim == 3 * 16 * 16
    noted = describe(load_image_encoder("pixels:8", image_size=16))
    assert noted["preprocess"]["input_size"] == [16, 16] and "image_size override" in noted["preprocess"]["notes"][0]
    assert not list(enc.parameters()) and enc.param_groups(0.05, 0.75) == [] and enc.shard_units() == []
    with pytest.raises(EncoderError, match="write pixels or pixels:SIZE"):
        load_image_encoder("pixels:big")
    with pytest.raises(EncoderError, match="raw pixels are image encoders"):
        load_text_encoder("pixels")


# ------------------------------------------------------------------------------------------------ our ViT


def test_our_vit_is_an_image_encoder_with_one_layer_decay_rule():
    from selfsup.encoders import ImageEncoder
    from selfsup.optim import layer_decay_groups
    from vision.encoder import ViTEncoder
    from vision.vit import ViTConfig
    enc = ViTEncoder.random(ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2))
    assert isinstance(enc, ImageEncoder) and enc.depth == 3 and enc.input_size == 16 and enc.num_tokens() == 16
    groups = enc.param_groups(0.05, 0.5)
    same = layer_decay_groups(enc, enc.layer_id, 3, 0.05, 0.5)
    assert [(g["lr_scale"], g["weight_decay"], [id(p) for p in g["params"]]) for g in groups] == \
        [(g["lr_scale"], g["weight_decay"], [id(p) for p in g["params"]]) for g in same]
    block0 = {g["lr_scale"] for g in groups if any(p is enc.vit.blocks[0].attn.qkv.weight for p in g["params"])}
    assert block0 == {0.5 ** 3}                                        # decay ** (depth + 1 - (0 + 1))
    enc.unfreeze()
    assert not enc.vit.pos_embed.requires_grad                         # fixed sin-cos: never trained
    enc.unfreeze(last_k=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("vit.blocks.2.", "vit.norm.")) for n in trainable)
    assert enc.shard_units() == list(enc.vit.blocks)
    x = images(2, 24, 20)                                              # any size: brought to 16 px by its own resize
    torch.testing.assert_close(enc(x)["cls"], enc(enc.preprocess.resize(x))["cls"])
    d = describe(enc)
    assert d["encoder_family"] == "selfsup" and d["preprocess"]["input_size"] == [16, 16]


def test_shard_units_are_each_libraries_blocks(encoders):
    for name, enc in encoders.items():
        units = enc.shard_units()
        assert len(units) == enc.depth == 2, name
