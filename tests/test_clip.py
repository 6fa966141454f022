"""CLIP: retrieval recall against brute force and clip_benchmark, zero-shot prompts and classifier, losses, tower
modes, the task end to end (train -> retrieval / zero-shot / probes -> export -> other tasks build from the export)."""
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModel, AutoTokenizer

from multimodal import data as D
from multimodal.clip import CLIP_LOGIT_SCALE, build_loss
from multimodal.clip_task import ClipTask
from multimodal.retrieval import chance_recall, retrieval_recall
from multimodal.zeroshot import COUNTS, folder_prompts, scene_prompts, zeroshot_accuracy, zeroshot_classifier
from selfsup.config import to_object
from selfsup.task import BatchPlan
from vision.encoder import ViTEncoder
from vision.scenes import ATTRIBUTES

from conftest import make_cfg, train

SMALL = ["task.vision_model.img_size=16", "task.vision_model.embed_dim=32", "task.vision_model.depth=2",
         "task.vision_model.num_heads=2", "task.text_model.hidden_size=32", "task.text_model.num_layers=2",
         "task.text_model.num_heads=2", "task.text_model.intermediate_size=64", "task.vocab_size=200",
         "task.embed_dim=16", "task.data.num_train=96", "task.data.num_eval=24", "task.eval.max_images=20",
         "task.eval.probe.epochs=2", "task.eval.probe.max_train=64"]


# ------------------------------------------------------------------------------------------------ retrieval


def clip_benchmark_recall(scores, positive_pairs, k):
    """clip_benchmark's recall_at_k (metrics/zeroshot_retrieval.py), as its evaluate() uses it: > 0 is a hit."""
    topk = torch.topk(scores, k, dim=1)[1]
    onehot = F.one_hot(topk, num_classes=scores.shape[1])
    true_positive = (onehot * positive_pairs.view(scores.shape[0], 1, scores.shape[1])).sum(dim=(1, 2))
    return ((true_positive / positive_pairs.sum(1)) > 0).float().mean().item()


def brute_force(scores, text_image, k):
    """Loop over queries: sort the candidates; a hit if any positive is in the first k (ties: positive first)."""
    num_texts, num_images = scores.shape
    t2i = []
    for t in range(num_texts):
        order = sorted(range(num_images), key=lambda i: (-scores[t, i].item(), i != text_image[t].item()))
        t2i.append(text_image[t].item() in order[:k])
    i2t = []
    for i in range(num_images):
        own = {t for t in range(num_texts) if text_image[t] == i}
        order = sorted(range(num_texts), key=lambda t: (-scores[t, i].item(), t not in own))
        i2t.append(bool(own & set(order[:k])))
    return sum(t2i) / num_texts, sum(i2t) / num_images


def test_retrieval_recall_matches_brute_force_and_clip_benchmark():
    g = torch.Generator().manual_seed(0)
    num_images = 13
    text_image = torch.cat([torch.arange(num_images), torch.randint(num_images, (20,), generator=g)])  # 1..4 captions
    scores = torch.randn(len(text_image), num_images, generator=g)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), text_image] = True
    got = retrieval_recall(scores, text_image, ks=(1, 3, 5), chunk=7)
    for k in (1, 3, 5):
        t2i, i2t = brute_force(scores, text_image, k)
        assert got[f"image_retrieval_recall@{k}"] == pytest.approx(t2i)
        assert got[f"text_retrieval_recall@{k}"] == pytest.approx(i2t)
        assert got[f"image_retrieval_recall@{k}"] == pytest.approx(clip_benchmark_recall(scores, positive, k))
        assert got[f"text_retrieval_recall@{k}"] == pytest.approx(clip_benchmark_recall(scores.T, positive.T, k))
    assert 0 < got["image_retrieval_recall@1"] < got["image_retrieval_recall@5"] < 1
    chance = chance_recall(text_image, num_images, ks=(1, 3))
    shuffled = [retrieval_recall(torch.randn(len(text_image), num_images, generator=g), text_image, ks=(1, 3))
                for _ in range(3000)]   # random rankings: the mean recall is the chance level
    for name, value in chance.items():
        assert sum(r[name.removesuffix("_chance")] for r in shuffled) / 3000 == pytest.approx(value, abs=0.01)

    # equal strings embed equally: a tie with another image's identical caption goes to the query
    ties = torch.tensor([[0.9, 0.1], [0.9, 0.1]])          # caption 1 (of image 1) is the same string as caption 0
    r = retrieval_recall(ties, torch.tensor([0, 1]), ks=(1,))
    assert r["text_retrieval_recall@1"] == 1.0 and r["image_retrieval_recall@1"] == 0.5
    assert brute_force(ties, torch.tensor([0, 1]), 1) == (0.5, 1.0)
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval_recall(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    few = chance_recall(torch.tensor([0, 1, 2]), 3)              # fewer captions than k: every caption is in the top k
    assert few["text_retrieval_recall@5_chance"] == few["image_retrieval_recall@5_chance"] == 1.0


# ------------------------------------------------------------------------------------------------ zero-shot


def test_scene_prompt_classes_follow_label_order():
    data = D.scene_split("test", 300, 16)
    assert set(data.attributes) == set(ATTRIBUTES)
    seen = 0
    for i, refs in enumerate(data.refs):
        for ref in refs:   # the grammar's "the largest shape is a COLOUR SHAPE" and "N shapes on a B background"
            if ref.startswith("the largest shape is a "):
                colour, shape = ref.split()[-2:]
                assert scene_prompts("colour")[0][data.attributes["colour"][i]] == colour
                assert scene_prompts("shape")[0][data.attributes["shape"][i]] == shape
                seen += 1
            if ref.split(" on a ")[0] in COUNTS and ref.endswith(" background") and "striped" not in ref:
                count, background = ref.split(" on a ")
                assert scene_prompts("count")[0][data.attributes["count"][i]] == count
                assert scene_prompts("background")[0][data.attributes["background"][i]] == background.split()[0]
                seen += 1
    assert seen > 100
    names, templates = scene_prompts("size")
    assert names == ["small", "medium", "large"] and all(t.count("{}") == 1 for t in templates)
    with pytest.raises(ValueError, match="position"):
        scene_prompts("position")
    names, templates = folder_prompts(["pickup_truck", "cat"])
    assert names == ["pickup truck", "cat"] and len(templates) == 7
    with pytest.raises(ValueError, match="zeroshot_templates"):
        folder_prompts(["cat"], "fancy")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    os.environ.setdefault("SELFSUP_CACHE", str(tmp_path_factory.mktemp("cache")))
    return ClipTask(to_object(make_cfg(ClipTask, SMALL)).task)


def test_zeroshot_classifier_averages_prompts_in_embedding_space(task):
    torch.manual_seed(0)
    model = task.build_model().eval()
    names, templates = ["circle", "square", "cross"], ["a {}", "a picture of a {}", "the largest shape is a {}"]
    got = zeroshot_classifier(model, names, templates)
    with torch.no_grad():
        manual = torch.stack([F.normalize(F.normalize(model.encode_text(
            model.text.tokenize([t.format(c) for t in templates])), dim=-1).mean(0), dim=0) for c in names], 1)
    torch.testing.assert_close(got, manual, rtol=1e-5, atol=1e-6)
    assert got.shape == (16, 3)
    # an image whose embedding is a class's embedding is classified as that class
    assert zeroshot_accuracy(got.T[[2, 0, 1]], got, torch.tensor([2, 0, 1])) == 1.0


# ------------------------------------------------------------------------------------------------ model and losses


def test_losses_temperature_and_siglip(task):
    torch.manual_seed(0)
    model = task.build_model()
    assert model.logit_scale.item() == pytest.approx(CLIP_LOGIT_SCALE) and model.logit_bias is None
    batch = next(iter(task.train_batches(BatchPlan(8, 1, 0, 1, seed=0, start_step=0))))
    out = model(batch["images"], batch["input_ids"], batch["attention_mask"])
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
    target = torch.arange(8)
    manual = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(build_loss("clip")(**out), manual)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model(batch["images"], batch["input_ids"], batch["attention_mask"])["logit_scale"].item() == 100.0

    task.cfg.loss = "siglip"
    try:
        sig = task.build_model()
    finally:
        task.cfg.loss = "clip"
    assert sig.logit_scale.exp().item() == pytest.approx(10.0) and sig.logit_bias.item() == -10.0
    out = sig(batch["images"], batch["input_ids"], batch["attention_mask"])
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T + out["logit_bias"]
    labels = 2 * torch.eye(8) - 1
    torch.testing.assert_close(build_loss("siglip")(**out), -F.logsigmoid(labels * logits).sum() / 8)
    with pytest.raises(ValueError, match="task.loss"):
        build_loss("infonce")


def test_tower_modes_lr_scales_and_groups(task):
    cfg = task.cfg
    old = (cfg.vision_mode, cfg.text_mode, cfg.text_lr_scale)
    cfg.vision_mode, cfg.text_mode, cfg.text_lr_scale = "llrd", "frozen", 0.1
    try:
        model = task.build_model()
        groups = task.param_groups(model, 0.2)
        in_groups = [p for g in groups for p in g["params"]]
        assert len(in_groups) == len({id(p) for p in in_groups})                      # each parameter once
        assert {id(p) for p in in_groups} == {id(p) for p in model.parameters() if p.requires_grad}
        assert not any(p.requires_grad for p in model.text.parameters())              # frozen text tower
        scales = {g["lr_scale"] for g in groups if any(p is model.image.vit.blocks[0].attn.qkv.weight
                                                       for p in g["params"])}
        assert scales == {0.75 ** 2}                                                  # block 0 of 2: decay^(3 - 1)
        cfg.vision_mode, cfg.text_mode = "frozen", "llrd"
        model = task.build_model()
        groups = task.param_groups(model, 0.2)
        top = [g for g in groups if any(p is model.text.model.encoder.layer[1].output.dense.weight
                                        for p in g["params"])]
        assert [g["lr_scale"] for g in top] == [pytest.approx(0.1 * 0.75)]           # text lr scale x decay
        assert any(g["weight_decay"] == 0 and any(p is model.logit_scale for p in g["params"]) for g in groups)
    finally:
        cfg.vision_mode, cfg.text_mode, cfg.text_lr_scale = old
    with pytest.raises(ValueError, match="grad_accum"):
        task.train_batches(BatchPlan(8, 2, 0, 1, seed=0, start_step=0))


# ------------------------------------------------------------------------------------------------ end to end


def write_folder(root: Path, classes=("cat", "pickup_truck", "ship"), per_class=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 20), (60 * c, 10 * i, 100)).save(root / name / f"{i}.png")


def test_clip_trains_evaluates_exports_and_other_tasks_take_the_towers(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    write_folder(tmp_path / "folder" / "val")
    run = tmp_path / "run"
    out = train(ClipTask, run, SMALL + ["trainer.max_steps=4", "trainer.batch_size=16", "trainer.log_every=2",
                                        f"task.eval.zeroshot_folder={tmp_path / 'folder' / 'val'}"])
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "logit_scale", "batch_i2t_top1", "samples_per_s"} <= set(rec[-1])
    res = {(r.dataset, r.split, r.metric): r for r in out["results"]}
    for split in ("test", "test_heldout"):
        for k in (1, 5, 10):
            for way in ("image", "text"):
                assert 0 <= res[("scenes-captions", split, f"{way}_retrieval_recall@{k}")].value <= 1
        assert res[("scenes-captions", split, "image_retrieval_recall@1")].extra["n_images"] == 20
        for attribute in ("shape", "colour", "size", "count", "background"):
            assert ("scenes-" + attribute, split, "zeroshot_top1") in res
    assert {("scenes-shape", "test", "linear_probe_top1_cls"), ("scenes-colour", "test", "knn_top1_mean")} <= set(res)
    assert (run / "figures" / "step_00000004" / "retrieval_gallery.png").is_file()
    assert res[("scenes-count", "test", "zeroshot_majority_baseline")].value >= 1 / 3
    assert res[("scenes-captions", "test", "image_retrieval_recall@5_chance")].value == 5 / 20
    folder = res[("folder", "val", "zeroshot_top1")]
    assert folder.extra["classes"] == 3 and folder.extra["n"] == 12 and folder.extra["class_words_in_vocab"] < 1

    from selfsup.cli import main
    export = tmp_path / "export"
    assert main(["export", "clip", "--checkpoint", str(run), "--out", str(export)]) == 0
    model = out["model"]
    image = ViTEncoder.from_checkpoint(export / "image")
    for k, v in image.state_dict().items():
        torch.testing.assert_close(v, model.image.state_dict()[k])
    text = AutoModel.from_pretrained(str(export / "text"), local_files_only=True)
    assert AutoTokenizer.from_pretrained(str(export / "text")).vocab == task_vocab(model)
    torch.testing.assert_close(text.embeddings.word_embeddings.weight,
                               model.text.model.embeddings.word_embeddings.weight)
    assert json.loads((export / "clip.json").read_text())["embed_dim"] == 16

    # the towers as inits of the other tasks: captioning (both), finetuning and PPO (the image tower)
    from multimodal.task import CaptionTask
    from rl.policy import EncoderConfig, build_policy
    from vision.finetune import FinetuneTask
    cap = CaptionTask(to_object(make_cfg(CaptionTask, [
        f"task.vision_init={export / 'image'}", f"task.text_init={export / 'text'}", "task.data.num_train=32",
        "task.data.num_eval=8"])).task)
    captioner = cap.build_model()
    torch.testing.assert_close(captioner.encoder.vit.blocks[1].mlp.fc2.weight, model.image.vit.blocks[1].mlp.fc2.weight)
    torch.testing.assert_close(captioner.decoder.bert.encoder.layer[1].output.dense.weight,
                               model.text.model.encoder.layer[1].output.dense.weight)
    ft = FinetuneTask(to_object(make_cfg(FinetuneTask, [f"task.init={export / 'image'}", "task.data.num_train=32",
                                                        "task.data.num_test=8"])).task)
    assert ft.build_model().encoder.embed_dim == 32
    policy = build_policy(EncoderConfig(kind="vit", init=str(export / "image")), (2, 16, 16, 3), 4)
    torch.testing.assert_close(policy.backbone.encoder.vit.norm.weight, model.image.vit.norm.weight)


def task_vocab(model):
    return model.text.tokenizer.vocab


@pytest.mark.skipif(not (Path(__file__).resolve().parent.parent / "../shared/data/cifar10-subset/val").is_dir(),
                    reason="../shared/data/cifar10-subset is absent (real-data check of zero-shot on an ImageFolder)")
def test_zeroshot_on_cifar10_subset_class_names(task):
    task.cfg.eval.max_images = 100
    try:
        score, baseline = task._zeroshot_folder(task.build_model().eval(),
                                      Path(__file__).resolve().parent.parent / "../shared/data/cifar10-subset/val")
    finally:
        task.cfg.eval.max_images = 20
    assert (score.dataset, score.split) == ("cifar10-subset", "val")
    assert score.extra["classes"] == 10 and score.extra["n"] == 100 and 0 <= score.value <= 1
    assert baseline.value == 0.1          # a stratified sample: ten of each class


def test_evidence_arms_for_clip_and_captioning_on_clip_towers(tmp_path, monkeypatch):
    from benchmarks import evidence
    made = []
    monkeypatch.setattr(evidence, "export", lambda task, run, out: made.append((task, run)) or out)
    arms = dict(evidence.arms("clip", 1, tmp_path / "out", tmp_path))
    assert arms["pretrained"] == [f"task.vision_init={tmp_path / 'evidence-mae' / 'pretrained-s1'}",
                                  f"task.text_init={tmp_path / 'out' / 'bert-export-s1'}"]
    assert arms["random"] == [f"task.text_init={tmp_path / 'out' / 'bert-export-s1'}", "task.text_pretrained=false"]
    arms = dict(evidence.arms("caption-clip", 1, tmp_path / "out", tmp_path))
    assert list(arms) == ["clip-from-mae", "clip-from-random", "mae", "random"]
    assert arms["clip-from-random"][0] == f"task.vision_init={tmp_path / 'out' / 'clip-random-export-s1' / 'image'}"
    assert all(a[-1] == f"task.text_init={tmp_path / 'out' / 'bert-export-s1'}" for a in arms.values())
    assert ("clip", tmp_path / "evidence-clip" / "pretrained-s1") in made and evidence.TASK["caption-clip"] == "caption"


def test_clip_on_karpathy_captions_retrieves_without_scene_evaluations(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "white": (240, 240, 240)}
    images = []
    for i in range(24):
        name = list(colours)[i % 4]
        Image.new("RGB", (24, 20), colours[name]).save(tmp_path / f"{i}.png")
        images.append({"filepath": "", "filename": f"{i}.png", "imgid": i, "split": "test" if i >= 16 else "train",
                       "sentences": [{"raw": f"a {name} picture"}, {"raw": f"all {name}"}, {"raw": f"{name} {i}"}]})
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    out = train(ClipTask, tmp_path / "run", SMALL + [
        "task.data.source=karpathy", f"task.data.annotations={tmp_path / 'dataset_flickr8k.json'}",
        f"task.data.image_root={tmp_path}", "task.vocab_size=60", "trainer.max_steps=2", "trainer.batch_size=8"])
    res = {(r.dataset, r.split, r.metric): r for r in out["results"]}
    assert {d for d, _, _ in res} == {"karpathy-captions"} and {s for _, s, _ in res} == {"test"}
    recall = res[("karpathy-captions", "test", "text_retrieval_recall@5")]
    assert {k: recall.extra[k] for k in ("n_images", "n_texts", "n_distinct_texts")} == \
        {"n_images": 8, "n_texts": 24, "n_distinct_texts": 16}
    towers = recall.extra["image_tower"], recall.extra["text_tower"]                   # what each tower was, recorded
    assert towers[0]["encoder_family"] == "selfsup" and towers[0]["preprocess"]["input_size"] == [16, 16]
    assert towers[1]["embed_dim"] == 32 and towers[1]["pretrained"] is False


def test_text_tower_from_an_export_checks_what_loaded(task, tmp_path):
    from transformers import BertForPreTraining

    from selfsup.encoders import EncoderError, load_text_encoder
    bert = BertForPreTraining(task.build_model().text.model.config)   # an MLM+NSP export: heads the tower drops
    bert.save_pretrained(str(tmp_path / "bert"))
    task.text.template.tokenizer.save_pretrained(str(tmp_path / "bert"))
    tower = load_text_encoder(str(tmp_path / "bert"), max_length=32)
    torch.testing.assert_close(tower.model.encoder.layer[1].output.dense.weight,
                               bert.bert.encoder.layer[1].output.dense.weight)
    assert tower.model.pooler is None
    config = json.loads((tmp_path / "bert" / "config.json").read_text())
    (tmp_path / "bert" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(EncoderError, match="encoder.layer.2"):
        load_text_encoder(str(tmp_path / "bert"))
    with pytest.raises(EncoderError, match="max_length 999 must lie in 1..128, the positions"):
        load_text_encoder(str(tmp_path / "bert"), pretrained=False, max_length=999)
