"""GLUE-style TSV tasks in their real formats, metrics, and finetuning end to end."""
import json

import pytest
import torch
from transformers import BertForPreTraining, ElectraForSequenceClassification

from language.corpus import CorpusError
from language.glue import GlueConfig, GlueTask, read_glue_tsv
from language.model import BertModelConfig, hf_config
from language.objectives.electra import ElectraPretrainer, ElectraSettings, hf_configs
from language.tokenizer import TokenizerError, load_tokenizer, train_wordpiece
from selfsup.encoders import EncoderError

from conftest import train

WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


def write_tasks(root):
    sst = ["sentence\tlabel"] + [f"a {w} movie indeed\t{int(i % 6 < 3)}" for i, w in enumerate(WORDS * 10)]
    cola = [f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\tthe {w} cat sat ." for i, w in enumerate(WORDS * 5)]
    mrpc = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"] + \
        [f"{i % 2}\t{i}\t{i + 1}\tthe {w} news .\ta {w} story ." for i, w in enumerate(WORDS * 5)]
    rte = ["index\tsentence1\tsentence2\tlabel"] + \
        [f"{i}\tthe {w} dog ran .\ta dog ran .\t{'entailment' if i % 2 else 'not_entailment'}"
         for i, w in enumerate(WORDS * 5)]
    for name, lines in (("SST-2", sst), ("CoLA", cola), ("MRPC", mrpc), ("RTE", rte)):
        (root / name).mkdir(parents=True)
        for split in ("train", "dev"):
            (root / name / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return write_tasks(tmp_path_factory.mktemp("glue"))


@pytest.mark.parametrize("name,folder,n,first_label", [("sst2", "SST-2", 60, 1), ("cola", "CoLA", 30, 0),
                                                       ("mrpc", "MRPC", 30, 0), ("rte", "RTE", 30, 1)])
def test_read_formats(glue_dir, name, folder, n, first_label):
    texts, labels = read_glue_tsv(glue_dir / folder / "train.tsv", name)
    assert len(texts) == n and labels[0] == first_label
    assert len(texts[0]) == (2 if name in ("mrpc", "rte") else 1)


def test_wrong_format_is_clear(glue_dir):
    with pytest.raises(CorpusError, match="lacks the rte columns"):
        read_glue_tsv(glue_dir / "SST-2" / "train.tsv", "rte")
    with pytest.raises(CorpusError, match="rows do not fit the cola format"):
        read_glue_tsv(glue_dir / "RTE" / "train.tsv", "cola")
    with pytest.raises(CorpusError, match="GLUE file not found"):
        read_glue_tsv(glue_dir / "nope.tsv", "sst2")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    tok = train_wordpiece([f"a {w} movie indeed the cat sat news story dog ran" for w in WORDS] * 20, 120, d)
    cfg = BertModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=64)
    BertForPreTraining(hf_config(cfg, len(tok))).save_pretrained(str(d))
    return d


@pytest.mark.parametrize("name,folder,metrics", [("sst2", "SST-2", {"accuracy"}),
                                                 ("cola", "CoLA", {"matthews_corr", "accuracy"}),
                                                 ("mrpc", "MRPC", {"f1", "accuracy"})])
def test_finetune_writes_the_task_metric(glue_dir, bert_dir, tmp_path, name, folder, metrics, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    over = [f"task.name={name}", f"task.data_dir={glue_dir / folder}", f"task.init={bert_dir}", "task.max_len=16",
            "trainer.max_steps=30", "trainer.batch_size=16", "trainer.lr=3e-3"]
    train(GlueTask, tmp_path / "run", over)
    res = {r["metric"]: r["value"] for r in json.loads((tmp_path / "run" / "results.json").read_text())}
    assert set(res) == metrics | {f"bow_logreg_{m}" for m in metrics}
    if name == "sst2":
        assert res["accuracy"] > 0.9                     # the sentiment word decides the label: learnable
        assert res["bow_logreg_accuracy"] == 1.0         # and a bag of words sees it too
        assert len(list((tmp_path / "cache" / "glue-bow").iterdir())) == 1      # computed once, cached


def test_any_export_finetunes_and_random_weights_are_the_baseline(glue_dir, bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    cfg = BertModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=64)
    tok = load_tokenizer(bert_dir)
    model = ElectraPretrainer(*hf_configs(cfg, ElectraSettings(), len(tok)), ElectraSettings())
    model.discriminator.save_pretrained(str(tmp_path / "electra"))
    tok.save_pretrained(str(tmp_path / "electra"))
    over = ["task.name=sst2", f"task.data_dir={glue_dir / 'SST-2'}", f"task.init={tmp_path / 'electra'}",
            "trainer.max_steps=2", "trainer.batch_size=8"]
    out = train(GlueTask, tmp_path / "run", over)
    assert isinstance(out["model"], ElectraForSequenceClassification)
    emb = out["model"].electra.embeddings.word_embeddings.weight
    rand = train(GlueTask, tmp_path / "rand", over + ["task.pretrained=false", "trainer.max_steps=0"])["model"]
    assert isinstance(rand, ElectraForSequenceClassification) and rand.config.hidden_size == 32
    fresh = model.discriminator.electra.embeddings.word_embeddings.weight
    assert (rand.electra.embeddings.word_embeddings.weight - fresh).abs().max() > 1e-3     # not the export's weights
    assert (emb - fresh).abs().max() < 0.1                                                 # 2 small steps from them


def test_init_is_a_text_spec_hf_dir_and_hub_ids(glue_dir, bert_dir, tmp_path, monkeypatch):
    """hf:DIR finetunes like the bare folder; a hub id offline names what to fetch; other specs say what glue takes."""
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    base = ["task.name=sst2", f"task.data_dir={glue_dir / 'SST-2'}", "trainer.max_steps=1", "trainer.batch_size=8",
            "task.bow_baseline=false"]
    out = train(GlueTask, tmp_path / "run", base + [f"task.init=hf:{bert_dir}"])
    res = json.loads((tmp_path / "run" / "results.json").read_text())[0]
    assert res["extra"]["init"] == f"hf:{bert_dir}" and res["extra"]["model"] == "BertForSequenceClassification"
    assert type(out["model"]).__name__ == "BertForSequenceClassification"

    from huggingface_hub import constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderError, match="not in the local cache.*hf download google/electra-small-discriminator"):
        GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init="hf:google/electra-small-discriminator"))
    for init, said in [("open_clip:ViT-B-32", "is a open_clip encoder; glue finetunes transformers models"),
                       (str(tmp_path / "nothing"), "no transformers folder there"),
                       (str(tmp_path / "run"), "is a training run; export its encoder first")]:
        with pytest.raises(TokenizerError, match=said):
            GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init=init))


def test_a_checkpoint_without_its_encoder_weights_is_refused(glue_dir, bert_dir, tmp_path):
    """transformers would initialise missing encoder weights at random and say so only in a log line."""
    import shutil

    from safetensors.torch import load_file, save_file
    cut = tmp_path / "cut"
    shutil.copytree(bert_dir, cut)
    weights = load_file(cut / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.0.attention" not in k}, cut / "model.safetensors",
              metadata={"format": "pt"})
    task = GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init=str(cut)))
    with pytest.raises(TokenizerError, match="lacks weights of its own encoder .*layer.0.attention"):
        task.build_model()
    assert type(GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init=str(bert_dir))).build_model()
                ).__name__ == "BertForSequenceClassification"


def test_a_classifier_for_another_label_count_gets_a_fresh_head_and_a_folder_needs_its_tokenizer(
        glue_dir, bert_dir, tmp_path):
    import shutil

    from transformers import BertForSequenceClassification
    mnli = tmp_path / "mnli"
    shutil.copytree(bert_dir, mnli)
    three = BertForSequenceClassification.from_pretrained(str(bert_dir), num_labels=3)
    three.save_pretrained(str(mnli))                                   # a 3-label classifier, e.g. from MNLI
    model = GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init=str(mnli))).build_model()
    assert model.classifier.out_features == 2                         # SST-2's two labels: a fresh head
    assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, three.bert.encoder.layer[0].output.dense.weight)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(bert_dir / "config.json", bare)
    shutil.copy(bert_dir / "model.safetensors", bare)
    with pytest.raises(TokenizerError, match="has no tokenizer"):
        GlueTask(GlueConfig(data_dir=str(glue_dir / "SST-2"), init=str(bare)))
