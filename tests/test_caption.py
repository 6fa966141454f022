"""Captioning: grammar references, data formats, metrics, decoding with a KV cache, warm start, the task."""
import copy
import dataclasses
import json

import pytest
import torch
from PIL import Image
from transformers import BertForPreTraining

from multimodal import data as D
from multimodal.captions import HELD_OUT, captions, relation
from multimodal.metrics import CaptionScorer, regex_tokenize
from multimodal.task import CaptionTask
from vision.data import ImageDataError
from vision.scenes import Scene, SceneObject

from conftest import make_cfg, train


def test_grammar_gives_distinct_correct_references():
    a = SceneObject("circle", "red", "large", 0.2, 0.5)
    b = SceneObject("square", "blue", "small", 0.8, 0.5)
    refs = captions(Scene((a, b), "grey"), n=5, seed=0)
    assert len(refs) == len(set(refs)) == 5
    assert all("red circle" in r or "two shapes" in r or "largest" in r for r in refs)
    assert relation(a, b) == "to the left of" and relation(b, a) == "to the right of"
    assert relation(SceneObject("cross", "red", "small", 0.5, 0.1), b) == "above"


def test_heldout_split_has_only_unseen_pairs():
    train = D.scene_split("train", 200, 16)
    held = D.scene_split("test_heldout", 50, 16)
    pairs = lambda refs: {(c, s) for r in refs for c, s in HELD_OUT if f"{c} {s}" in r}  # noqa: E731
    assert not pairs(r for rs in train.refs for r in rs)
    assert all(any(f"{c} {s}" in r for c, s in HELD_OUT for r in rs) for rs in held.refs)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        D.scene_split("dev", 5, 16)


def write_images(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (20, 20), (255, 0, 0)).save(root / n)


def test_coco_karpathy_flickr_formats(tmp_path):
    write_images(tmp_path / "val2014", ["a.jpg", "b.jpg"])
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                       {"id": 3, "file_name": "gone.jpg"}],
            "annotations": [{"image_id": 1, "id": 9, "caption": "A red square."},
                            {"image_id": 1, "id": 10, "caption": " "},
                            {"image_id": 2, "id": 11, "caption": "Red."}, {"image_id": 3, "id": 12, "caption": "x"}]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    with pytest.warns(UserWarning) as w:
        s = D.coco_captions(tmp_path / "captions.json", tmp_path / "val2014", 8)
    messages = " ".join(str(x.message) for x in w)
    assert "skipped 1 empty captions" in messages and "1 of 3 referenced images are missing" in messages
    assert len(s) == 2 and s.refs[0] == ["A red square."] and s.take(torch.arange(2)).shape == (2, 3, 8, 8)
    with pytest.raises(ImageDataError, match="missing"):
        D.coco_captions(tmp_path / "captions.json", tmp_path / "val2014", 8, strict=True)

    karpathy = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "a.jpg", "split": "restval", "cocoid": 1,
         "sentences": [{"raw": "A red square."}]},
        {"filepath": "val2014", "filename": "b.jpg", "split": "test", "cocoid": 2,
         "sentences": [{"raw": "Red."}, {"raw": "Red!"}]}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(karpathy))
    tr = D.karpathy_split(tmp_path / "dataset_coco.json", tmp_path, "train", 8)
    te = D.karpathy_split(tmp_path / "dataset_coco.json", tmp_path, "test", 8)
    assert tr.ids == ["1"] and te.refs == [["Red.", "Red!"]]
    with pytest.raises(ValueError, match="unknown split 'restval'"):
        D.karpathy_split(tmp_path / "dataset_coco.json", tmp_path, "restval", 8)

    names = [f"{i}.jpg" for i in range(20)]
    write_images(tmp_path / "flickr", names)
    (tmp_path / "results.token").write_text("".join(f"{n}#{k}\tcaption {k} of {n}\n" for n in names for k in range(5)))
    parts = {s: D.flickr30k(tmp_path / "results.token", tmp_path / "flickr", s, 8) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [16, 2, 2] and len(parts["test"].refs[0]) == 5
    assert not set(parts["train"].ids) & set(parts["test"].ids)


def test_caption_sets_need_not_fit_in_memory(tmp_path, monkeypatch):
    import vision.lazy
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    images = []
    for i in range(12):
        Image.new("RGB", (30, 20), colours[i % 3]).save(tmp_path / f"{i}.png")
        images.append({"filepath": "", "filename": f"{i}.png", "imgid": i, "split": "test" if i >= 9 else "train",
                       "sentences": [{"raw": f"picture {i}"}]})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    images.append({"filepath": "", "filename": "broken.png", "imgid": 99, "split": "train",
                   "sentences": [{"raw": "broken"}]})
    (tmp_path / "karpathy.json").write_text(json.dumps({"images": images}))
    decoded = []
    original = vision.lazy.decode_image
    monkeypatch.setattr(vision.lazy, "decode_image", lambda source, *a, **k: decoded.append(source) or
                        original(source, *a, **k))
    cfg = D.CaptionDataConfig(source="karpathy", annotations=str(tmp_path / "karpathy.json"),
                              image_root=str(tmp_path), cache="lazy")
    lazy, _ = D.load_splits(cfg, 8)
    assert decoded == [] and len(lazy) == 10 and lazy.ids[-1] == "99"          # nothing decoded until asked
    assert torch.equal(lazy.take(torch.tensor([4, 1])), torch.stack([lazy.image(4), lazy.image(1)]))
    assert len(decoded) == 4 and lazy.image(0).shape == (3, 8, 8)
    with pytest.warns(UserWarning, match="stands in for it"):                  # lazy: replaced when found, warned
        assert torch.equal(lazy.image(9), lazy.image(0))
    with pytest.warns(UserWarning, match="skipped 1 of 10 corrupt"):            # in memory: left out with its captions
        memory, _ = D.load_splits(D.CaptionDataConfig(**{**cfg.__dict__, "cache": "memory"}), 8)
    assert len(memory) == 9 and "99" not in memory.ids and memory.refs == lazy.refs[:9]
    assert torch.equal(memory.take(torch.arange(9)), lazy.take(torch.arange(9)))   # the same pixels either way
    with pytest.raises(ImageDataError, match="task.data.cache must be one of"):
        D.load_splits(D.CaptionDataConfig(**{**cfg.__dict__, "cache": "disk"}), 8)

    from multimodal.clip_task import ClipTask
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    out = train(ClipTask, tmp_path / "clip", [            # decoded in a DataLoader worker during training
        "task.data.source=karpathy", f"task.data.annotations={tmp_path / 'karpathy.json'}",
        f"task.data.image_root={tmp_path}", "task.data.cache=lazy", "trainer.num_workers=1", "task.vocab_size=40",
        "task.vision_model.img_size=8", "task.vision_model.patch_size=4", "task.vision_model.embed_dim=16",
        "task.vision_model.depth=1", "task.vision_model.num_heads=2", "task.text_model.hidden_size=16",
        "task.text_model.num_layers=1", "task.text_model.num_heads=2", "task.text_model.intermediate_size=32",
        "task.embed_dim=8", "trainer.max_steps=2", "trainer.batch_size=4"])
    assert {r.metric for r in out["results"]} >= {"image_retrieval_recall@1"}


def test_captioned_datasets_by_name_in_their_own_formats(tmp_path, monkeypatch):
    """`datasets` tables as users have them: a save_to_disk DatasetDict with a list-of-captions column, and one
    parquet table with a split column and a caption string per row; a Hub id offline says how to fetch it."""
    import datasets

    from selfsup.hub import DatasetUnavailable
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]

    def rows(n, start=0):
        return {"image": [Image.new("RGB", (30, 20), colours[(start + i) % 3]) for i in range(n)],
                "sentences": [[f"picture {start + i}", f"shape {start + i}"] if i != 2 else [" "] for i in range(n)]}
    features = datasets.Features({"image": datasets.Image(), "sentences": datasets.Sequence(datasets.Value("string"))})
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(10), features=features),
                          "validation": datasets.Dataset.from_dict(rows(4, 10), features=features)}
                         ).save_to_disk(str(tmp_path / "saved"))
    with pytest.warns(UserWarning, match="skipped 1 images with no non-empty caption"):
        train_set, evals = D.load_splits(D.CaptionDataConfig(source="hf", name=str(tmp_path / "saved")), 8)
    assert len(train_set) == 9 and list(evals) == ["validation"] and len(evals["validation"]) == 3
    assert train_set.refs[2] == ["picture 3", "shape 3"]                         # the empty-caption row is gone
    assert train_set.take(torch.tensor([0, 2])).shape == (2, 3, 8, 8)
    assert train_set.image(1)[1].float().mean() > train_set.image(1)[0].float().mean()     # row 1 is green

    flat = datasets.Dataset.from_dict({"image": rows(12)["image"], "caption": [f"a thing {i}" for i in range(12)],
                                       "split": ["train"] * 8 + ["test"] * 4},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "caption": datasets.Value("string"),
                                                                  "split": datasets.Value("string")}))
    flat.to_parquet(str(tmp_path / "flat.parquet"))
    cfg = D.CaptionDataConfig(source="hf", name="parquet", data_files=str(tmp_path / "flat.parquet"),
                              split_column="split")
    train_set, evals = D.load_splits(cfg, 8)
    assert len(train_set) == 8 and evals["test"].refs == [["a thing 8"], ["a thing 9"], ["a thing 10"], ["a thing 11"]]
    no_split = dataclasses.replace(cfg, split_column="")                       # one table: a seeded 10 % held out
    tr, ev = D.load_splits(no_split, 8)
    assert len(tr) + len(ev["test"]) == 12 and len(ev["test"]) == 1
    assert not set(r[0] for r in tr.refs) & set(r[0] for r in ev["test"].refs)
    with pytest.raises(ImageDataError, match="has no column 'alt' .task.data.caption_column.; it has image, caption"):
        D.load_splits(dataclasses.replace(cfg, caption_column="alt"), 8)
    with pytest.raises(ImageDataError, match="no rows with split=val"):
        D.load_splits(dataclasses.replace(cfg, test_split="val"), 8)
    with pytest.raises(ImageDataError, match="is the training split too"):
        D.load_splits(dataclasses.replace(cfg, test_split="train"), 8)
    sentences = [[{"raw": "one"}, {"raw": "two"}], None, [{"raw": "three"}, {"tokens": ["x"]}]]     # Karpathy-style
    karpathy = datasets.Dataset.from_dict({"image": rows(3)["image"], "sentences": sentences,
                                           "split": ["train", "test", "test"]})
    karpathy.to_parquet(str(tmp_path / "k.parquet"))
    with pytest.warns(UserWarning, match="skipped 1 images with no non-empty caption"):
        tr, ev = D.load_splits(dataclasses.replace(cfg, data_files=str(tmp_path / "k.parquet")), 8)
    assert tr.refs == [["one", "two"]] and ev["test"].refs == [["three"]]          # None and unknown dicts: no caption
    assert torch.equal(ev["test"].image(0), D.load_splits(dataclasses.replace(
        cfg, data_files=str(tmp_path / "k.parquet"), caption_column="split"), 8)[1]["test"].image(1))    # aligned
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DatasetUnavailable, match="task.data.download=true"):
        D.load_splits(D.CaptionDataConfig(source="hf", name="someone/no-such-captions"), 8)

    from multimodal.clip_task import ClipTask
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    out = train(ClipTask, tmp_path / "clip", [
        "task.data.source=hf", f"task.data.name={tmp_path / 'saved'}", "task.vocab_size=40",
        "task.vision_model.img_size=8", "task.vision_model.patch_size=4", "task.vision_model.embed_dim=16",
        "task.vision_model.depth=1", "task.vision_model.num_heads=2", "task.text_model.hidden_size=16",
        "task.text_model.num_layers=1", "task.text_model.num_heads=2", "task.text_model.intermediate_size=32",
        "task.embed_dim=8", "trainer.max_steps=2", "trainer.batch_size=4"])
    recall = next(r for r in out["results"] if r.metric == "image_retrieval_recall@1")
    assert recall.split == "validation" and recall.dataset == f"{tmp_path / 'saved'}-captions"


def test_metrics_perfect_and_frozen_cider():
    train_refs = [["a red circle on grey", "one shape"], ["a blue square", "two shapes on black"]] * 5
    scorer = CaptionScorer(train_refs, use_ptb=False)
    refs = [["a red circle on grey", "one red circle"], ["a blue square on black", "two shapes"]]
    perfect = scorer.score(["a red circle on grey", "a blue square on black"], refs)
    wrong = scorer.score(["two shapes on black", "a red circle"], refs)
    assert perfect["bleu4"] > 0.9 and perfect["cider_d"] > wrong["cider_d"] and perfect["rouge_l"] == 1.0
    alone = scorer.score(["a red circle on grey"], refs[:1])["cider_d"]
    both = scorer.score(["a red circle on grey", "xx"], [refs[0], refs[1]])["cider_d"] * 2 - \
        scorer.score(["xx"], refs[1:])["cider_d"]
    assert abs(alone - both) < 1e-9                          # a score does not depend on its batch
    assert regex_tokenize("A Red, circle!") == "a red circle"
    assert "spice" in scorer.unavailable()


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """Shared by the tests below, so none of them may change it: a test that needs other settings takes
    ``variant(task, ...)``."""
    from selfsup.config import to_object
    with pytest.MonkeyPatch.context() as mp:        # no environment variable leaks into later tests
        mp.setenv("SELFSUP_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = to_object(make_cfg(CaptionTask, ["task.data.num_train=200", "task.data.num_eval=16",
                                               "task.vocab_size=200", "task.text_model.hidden_size=32",
                                               "task.text_model.num_heads=2", "task.text_model.num_layers=1",
                                               "task.text_model.intermediate_size=64", "task.eval.max_images=16"])).task
        yield CaptionTask(cfg)


def variant(task, **changes):
    """A copy of the shared task with other settings (its data and tokenizer are shared, read-only)."""
    t = copy.copy(task)
    t.cfg = dataclasses.replace(task.cfg, **changes)
    return t


def test_decoding_kv_cache_matches_recompute_and_beam1_is_greedy(task):
    model = task.build_model().eval()
    images = task.splits["test"].take(torch.arange(3))
    greedy = model.generate(images, max_len=8)
    seq = greedy[:, :1]
    memory = model.image_tokens(images)
    with torch.no_grad():
        for _ in range(greedy.shape[1] - 1):
            logits = model.decoder(input_ids=seq, encoder_hidden_states=memory).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    for row in range(len(images)):                           # equal up to and including the first [SEP]
        ends = (greedy[row] == task.tokenizer.sep_token_id).nonzero()
        n = int(ends[0]) + 1 if len(ends) else greedy.shape[1]
        assert torch.equal(greedy[row, :n], seq[row, :n])
    assert torch.equal(model.generate(images, max_len=8, num_beams=1), greedy)
    beams = model.generate(images, max_len=8, num_beams=3)
    assert beams.shape[0] == 3 and beams[:, 0].eq(task.tokenizer.cls_token_id).all()
    before = torch.get_rng_state()
    draws = [model.generate(images, max_len=8, top_p=0.9, generator=torch.Generator().manual_seed(seed))
             for seed in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1]) and draws[0][:, 0].eq(task.tokenizer.cls_token_id).all()
    assert not torch.equal(draws[0], draws[2])                 # another seed, another sample
    assert torch.equal(torch.get_rng_state(), before)          # sampling drew from its generator, not the global RNG
    with pytest.raises(ValueError, match="torch.Generator"):
        model.generate(images, max_len=8, top_p=0.9)


def test_gumbel_sampling_draws_from_the_nucleus():
    from transformers import LogitsProcessorList, TopPLogitsWarper

    from multimodal.model import GumbelSample
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    picks = LogitsProcessorList([TopPLogitsWarper(0.9), GumbelSample(g)])(None, logits).argmax(-1)
    freq = torch.bincount(picks, minlength=4).float() / len(picks)
    # the nucleus of p=0.9 is the first three tokens, renormalised: 0.5/0.95, 0.3/0.95, 0.15/0.95
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95, atol=0.012, rtol=0)


def test_random_vision_encoder_is_drawn_from_the_seed(task):
    weights = []
    for seed in (0, 0, 1):   # the trainer seeds before build_model
        torch.manual_seed(seed)
        weights.append(task.build_model().encoder.vit.blocks[0].attn.qkv.weight)
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_warm_start_from_bert_export(task, tmp_path):
    from language.model import BertModelConfig, hf_config
    cfg = BertModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=64)
    bert = BertForPreTraining(hf_config(cfg, len(task.tokenizer)))
    bert.save_pretrained(str(tmp_path / "bert"))
    task.tokenizer.save_pretrained(str(tmp_path / "bert"))
    model = variant(task, text_init=str(tmp_path / "bert")).build_model()
    dec = model.decoder.state_dict()
    src = bert.state_dict()
    shared = [k for k in dec if k in src]
    assert len(shared) > 10 and all(torch.equal(dec[k], src[k]) for k in shared)
    assert any("crossattention" in k for k in dec if k not in src)
    fresh = variant(task, text_init=str(tmp_path / "bert"), text_pretrained=False).build_model().decoder.state_dict()
    assert not torch.equal(fresh["bert.embeddings.word_embeddings.weight"],
                           src["bert.embeddings.word_embeddings.weight"])


def test_caption_task_trains_and_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    train(CaptionTask, run, ["task.data.num_train=200", "task.data.num_eval=16", "task.vocab_size=200",
                             "task.text_model.hidden_size=32", "task.text_model.num_heads=2",
                             "task.text_model.num_layers=1", "task.text_model.intermediate_size=64",
                             "task.contrastive_weight=0.5", "task.vision_mode=llrd",
                             "trainer.max_steps=6", "trainer.batch_size=16", "trainer.log_every=3"])
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert "contrastive_loss" in rec[-1] and rec[-1]["caption_loss"] < rec[0]["caption_loss"]   # it learns
    res = json.loads((run / "results.json").read_text())
    assert {(r["split"], r["metric"]) for r in res} >= {("test", "cider_d"), ("test_heldout", "bleu4"),
                                                        ("test", "rouge_l")}
    assert res[0]["extra"]["tokenizer"] in ("ptb", "regex")
    assert (run / "figures" / "step_00000006" / "caption_gallery.png").is_file()


def test_transformers_peer_holds_our_vit_and_trains(task, tmp_path, monkeypatch):
    from vision.transforms import normalize
    torch.manual_seed(0)       # as the trainer seeds before build_model: both captioners start from the same weights
    ours = task.build_model().eval()
    torch.manual_seed(0)
    peer = variant(task, impl="transformers").build_model().eval()
    images = task.splits["test"].take(torch.arange(2))
    with torch.no_grad():   # patch order is shuffled in ViTMAEModel; the CLS token's output cannot tell
        theirs = peer.model.encoder(pixel_values=normalize(images)).last_hidden_state[:, 0]
        ours = ours.encoder.forward_features(images)[:, 0]
    assert torch.allclose(theirs, ours, atol=1e-4)
    assert peer.generate(images, max_len=5, num_beams=2)[:, 0].eq(task.tokenizer.cls_token_id).all()

    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    out = train(CaptionTask, tmp_path / "peer", [
        "task.impl=transformers", "task.data.num_train=100", "task.data.num_eval=8", "task.vocab_size=200",
        "task.text_model.hidden_size=32", "task.text_model.num_heads=2", "task.text_model.num_layers=1",
        "task.text_model.intermediate_size=64", "trainer.max_steps=3", "trainer.batch_size=8"])
    assert {r.metric for r in out["results"]} >= {"cider_d", "bleu4"}
    with pytest.raises(ValueError, match="neither layer-wise"):
        train(CaptionTask, tmp_path / "bad", ["task.impl=transformers", "task.vision_mode=llrd", "trainer.max_steps=1"])
