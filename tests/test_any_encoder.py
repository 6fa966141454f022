"""Any encoder in every task: `vit-finetune`, `caption`, `clip` and `ppo` take an encoder spec (tiny models saved in
timm's, transformers' and open_clip's own formats, raw pixels, our clip and finetune runs), apply its preprocessing
and record it; the towers' training modes map onto the encoder API."""
import json

import pytest
import torch

from multimodal.clip_task import ClipTask
from multimodal.task import CaptionTask
from multimodal.towers import TowerError
from rl.policy import EncoderConfig, build_policy
from rl.task import PPOTask
from selfsup.config import to_object
from selfsup.encoders import EncoderError, load_image_encoder, load_text_encoder
from vision.finetune import FinetuneTask

import tiny_encoders as tiny
from conftest import make_cfg, train

SCENES = ["task.data.num_train=48", "task.data.num_test=16", "trainer.batch_size=8", "trainer.max_steps=2",
          "trainer.log_every=1"]
TEXT = ["task.text_model.hidden_size=32", "task.text_model.num_layers=1", "task.text_model.num_heads=2",
        "task.text_model.intermediate_size=64", "task.vocab_size=120"]
CAPTIONS = ["task.data.num_train=48", "task.data.num_eval=8", "trainer.batch_size=8", "trainer.max_steps=2",
            "task.eval.max_images=8"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Tiny encoders in each library's format (32-px images, 8-px patches, width 32, 2 blocks)."""
    root = tmp_path_factory.mktemp("hub")
    import transformers as T
    bert = tiny.hf_text(root / "bert", "bert")
    T.BertForPreTraining.from_pretrained(bert).save_pretrained(root / "bert-mlm")       # an MLM checkpoint + tokenizer
    T.AutoTokenizer.from_pretrained(bert).save_pretrained(root / "bert-mlm")
    cfg_file, weights, _, _ = tiny.open_clip_model(root / "oc")
    return {"timm": f"timm:{tiny.timm_folder(root / 'timm')}", "hf-vit": f"hf:{tiny.hf_vision(root / 'vit', 'vit')}",
            "bert": f"hf:{root / 'bert-mlm'}", "electra": f"hf:{tiny.hf_text(root / 'electra', 'electra')}",
            "open_clip": f"open_clip:{cfg_file}:{weights}"}


def task_of(cls, overrides):
    return cls(to_object(make_cfg(cls, overrides)).task)


# ------------------------------------------------------------------------------------------------ vit-finetune


def test_finetune_takes_any_image_spec_and_records_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    out = train(FinetuneTask, tmp_path / "ft", SCENES + [f"task.init={hub['hf-vit']}", "task.layer_decay=0.5"])
    (res,) = out["results"]
    assert res.extra["encoder"] == hub["hf-vit"] and res.extra["encoder_family"] == "hf"
    assert res.extra["preprocess"]["input_size"] == [32, 32] and res.extra["pretrained"] is True
    model = out["model"]
    assert model.head.in_features == 32
    trained = load_image_encoder(hub["hf-vit"])
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, model.encoder.state_dict()[n])]
    assert moved                                                        # it started from those weights and trained
    task = task_of(FinetuneTask, SCENES + [f"task.init={hub['hf-vit']}", "task.layer_decay=0.5"])
    assert task.img_size == 32
    groups = task.param_groups(task.build_model(), 0.05)
    assert sorted({g.get("lr_scale", 1.0) for g in groups}) == [0.125, 0.25, 0.5, 1.0]   # layers 0..3; head 1
    # the run is an encoder spec itself: the hub architecture with the finetuned weights
    again = load_image_encoder(str(tmp_path / "ft"))
    for n, p in again.state_dict().items():
        torch.testing.assert_close(p, model.encoder.state_dict()[n])
    fresh = task_of(FinetuneTask, SCENES + [f"task.init={hub['hf-vit']}", "task.pretrained=false"])
    a, b = trained.state_dict(), fresh.build_model().encoder.state_dict()
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)   # same architecture, fresh weights


def test_finetune_on_raw_pixels_is_a_linear_classifier_on_the_image(tmp_path):
    task = task_of(FinetuneTask, SCENES + ["task.init=pixels:16"])
    model = task.build_model()
    assert task.img_size == 16 and model.head.in_features == 3 * 16 * 16 and task.param_groups(model, 0.05)
    out = train(FinetuneTask, tmp_path / "px", SCENES + ["task.init=pixels:16"])
    assert out["results"][0].extra["encoder_family"] == "pixels"


# ------------------------------------------------------------------------------------------------ caption


def test_caption_on_a_hub_image_tower_and_a_hub_bert_decoder(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    overrides = CAPTIONS + [f"task.vision_init={hub['timm']}", f"task.text_init={hub['bert']}",
                            "task.vision_mode=llrd", "task.max_len=16"]
    out = train(CaptionTask, tmp_path / "cap", overrides + ["trainer.eval_at_end=false"])   # (scoring: test_caption)
    model = out["model"]
    import transformers as T
    bert = T.BertForPreTraining.from_pretrained(hub["bert"][3:]).state_dict()
    dec = model.decoder.state_dict()
    assert model.proj[0].in_features == 32 and dec["bert.embeddings.word_embeddings.weight"].shape[0] == \
        bert["bert.embeddings.word_embeddings.weight"].shape[0]
    task = task_of(CaptionTask, overrides + ["task.text_pretrained=false"])
    assert task.record["encoder"] == hub["timm"] and task.record["text_init"] == hub["bert"]   # in every Result
    assert task.record["preprocess"]["source"] == "timm pretrained_cfg"
    torch.manual_seed(0)
    start = task.build_model()
    assert start.encoder.family == "timm" and start.image_tokens(task.train.take(torch.arange(2))).shape == (2, 17, 32)
    with pytest.raises(TowerError, match="is a 'electra' model; the captioner's decoder is a BertLMHeadModel"):
        task_of(CaptionTask, CAPTIONS + [f"task.text_init={hub['electra']}"])
    with pytest.raises(TowerError, match="text_init must be a BERT checkpoint"):
        task_of(CaptionTask, CAPTIONS + [f"task.text_init={hub['open_clip']}"])
    with pytest.raises(ValueError, match="holds our ViT"):
        task_of(CaptionTask, CAPTIONS + [f"task.vision_init={hub['timm']}", "task.impl=transformers"])


# ------------------------------------------------------------------------------------------------ clip


def test_clip_on_any_towers_and_its_run_as_a_vision_init(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    overrides = CAPTIONS + TEXT + [f"task.vision_init={hub['hf-vit']}", f"task.text_init={hub['open_clip']}",
                                   "task.max_len=16", "task.embed_dim=8", "task.eval.probe.epochs=1",
                                   "task.eval.probe.max_train=16", "task.text_mode=llrd"]
    run = tmp_path / "clip"
    out = train(ClipTask, run, overrides)
    model = out["model"]
    assert model.text.family == "open_clip" and model.image.family == "hf"
    recall = next(r for r in out["results"] if r.metric == "image_retrieval_recall@1")
    assert recall.extra["image_tower"]["encoder"] == hub["hf-vit"]
    assert recall.extra["text_tower"]["preprocess"]["max_length"] == 16
    # the clip run is an image encoder spec: its tower (hub architecture) with the run's weights
    enc = load_image_encoder(str(run))
    assert enc.family == "clip(hf)"
    for n, p in enc.state_dict().items():
        torch.testing.assert_close(p, model.image.state_dict()[n])
    ft = task_of(FinetuneTask, SCENES + [f"task.init={run}"]).build_model()
    for n, p in ft.encoder.state_dict().items():
        torch.testing.assert_close(p, model.image.state_dict()[n])
    policy = build_policy(EncoderConfig(kind="vit", init=str(run)), (1, 32, 32, 3), 3)
    assert policy.backbone.encoder.input_size == 32
    with pytest.raises(EncoderError, match="its text tower is read from an export"):
        load_text_encoder(str(run))
    from selfsup.cli import main
    assert main(["export", "clip", "--checkpoint", str(run), "--out", str(tmp_path / "export")]) == 0
    written = json.loads((tmp_path / "export" / "clip.json").read_text())
    assert written["towers"] == {"image": None, "text": None} and written["image_tower"] == hub["hf-vit"]


def test_clip_export_text_tower_is_a_text_spec_and_our_vit_export_an_image_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    small = ["task.vision_model.img_size=16", "task.vision_model.embed_dim=32", "task.vision_model.depth=1",
             "task.vision_model.num_heads=2", "task.embed_dim=8", "task.eval.probes=false"]
    run = tmp_path / "clip"
    out = train(ClipTask, run, CAPTIONS + TEXT + small)
    from selfsup.cli import main
    assert main(["export", "clip", "--checkpoint", str(run), "--out", str(tmp_path / "export")]) == 0
    text = load_text_encoder(str(tmp_path / "export" / "text"))
    batch = text.tokenize(["a red circle"])
    torch.testing.assert_close(text(**batch)["cls"], out["model"].text.eval()(**batch)["cls"])
    assert text.max_length == 32
    image = load_image_encoder(str(tmp_path / "export" / "image"))
    from_run = load_image_encoder(str(run))                       # the run folder: the same tower
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(image(x)["cls"], from_run(x)["cls"])
    assert from_run.family == "clip(selfsup)"


# ------------------------------------------------------------------------------------------------ ppo


def test_ppo_runs_a_hub_encoder_at_the_frame_size_with_its_modes(hub):
    frames = (2, 40, 40, 3)
    for pool, dim in (("cls", 2 * 32), ("tokens", 2 * 25 * 4)):
        policy = build_policy(EncoderConfig(kind="vit", init=hub["timm"], pool=pool, compress_dim=4), frames, 3)
        enc = policy.backbone.encoder
        assert enc.input_size == 40 and "image_size override" in enc.preprocess.notes[-1]   # 5x5 patches of 8 px
        assert policy.trunk[0].in_features == dim
        logits, value = policy(obs=torch.zeros(3, *frames, dtype=torch.uint8))
        assert logits.shape == (3, 3) and value.shape == (3,)
    partial = build_policy(EncoderConfig(kind="vit", init=hub["timm"], mode="partial", last_k=1), frames, 3)
    enc = partial.backbone.encoder
    assert {enc.layer_id(n) for n, p in enc.named_parameters() if p.requires_grad} == {2}   # the last block (+ norm)
    frozen = build_policy(EncoderConfig(kind="vit", init=hub["timm"]), frames, 3)
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    ours = build_policy(EncoderConfig(kind="vit", init="pixels:8"), frames, 3)               # an explicit size
    assert ours.backbone.encoder.input_size == 8 and ours.trunk[0].in_features == 2 * 192


def test_ppo_lr_scale_goes_through_the_encoders_param_groups(hub):
    minigrid = ["task.env.id=MiniGrid-Empty-5x5-v0", "task.env.num_envs=2", "task.num_steps=16",
                "trainer.batch_size=8", f"task.encoder.init={hub['hf-vit']}", "task.encoder.mode=finetune",
                "task.encoder.lr_scale=0.1"]
    task = task_of(PPOTask, minigrid)
    model = task.build_model()
    assert model.backbone.encoder.input_size == 56                                 # MiniGrid's 56-px view
    groups = task.param_groups(model, 0.0)
    assert sorted(g.get("lr_scale", 1.0) for g in groups) == [0.1, 1.0]           # head at 1, encoder at 0.1
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(p.requires_grad for p in model.parameters())
    decayed = task.param_groups(model, 0.01)
    assert {(g["weight_decay"], g.get("lr_scale", 1.0)) for g in decayed} == {(0.01, 1.0), (0.01, 0.1), (0.0, 0.1)}


def test_ppo_trains_on_frozen_raw_pixels_and_records_the_encoder(tmp_path):
    out = train(PPOTask, tmp_path / "ppo", [
        "task.env.id=MiniGrid-Empty-5x5-v0", "task.env.num_envs=2", "task.num_steps=16", "trainer.batch_size=8",
        "task.encoder.init=pixels", "trainer.max_steps=16", "trainer.count_flops=false", "task.eval_episodes=2"])
    r = {x.metric: x for x in out["results"]}["return_deterministic"]
    assert r.extra["encoder"] == "pixels" and r.extra["preprocess"]["input_size"] == [56, 56]
    assert r.extra["encoder_init"] == "pixels" and r.extra["mode"] == "frozen"
