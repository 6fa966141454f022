"""Runs saved before this layout keep working (issue 13: nothing saved is lost): a task's ``migrate_config`` turns a
config.yaml of an older layout into the current one when ``selfsup.config.load_saved`` reads it, with a note, so
`selfsup eval` / `export` / `train --resume` and the encoder specs read old runs."""
from pathlib import Path

import pytest
import torch
import yaml

from selfsup.cli import main
from selfsup.config import ConfigError, load_saved, to_object, to_yaml
from selfsup.encoders import load_image_encoder
from selfsup.task import get_task_class
from vision.encoder import ViTEncoder
from vision.mae import MAETask

from conftest import train

OLD = Path(__file__).parent / "fixtures" / "old-configs"


@pytest.mark.parametrize("name", ["mae", "vit-finetune", "bert", "caption", "ppo"])
def test_old_config_files_read_in_the_current_layout(name, capsys):
    cls = get_task_class(name)
    old = yaml.safe_load((OLD / f"{name}.yaml").read_text())
    cfg = to_object(load_saved(cls, OLD / f"{name}.yaml"))
    note = capsys.readouterr().err
    assert "was written in an older layout" in note and f"task '{name}'" in note
    task, model = cfg.task, old["task"].get("model") or old["task"].get("vision_model") or \
        old["task"].get("encoder", {}).get("model")
    if name in ("mae", "vit-finetune"):
        assert task.vit.embed_dim == model["embed_dim"] == 128 and task.vit.img_size == model["img_size"]
        assert "task.model.* (12 keys) -> " in note and "task.vit.* (7 keys)" in note
    if name == "mae":
        assert task.mae.decoder_embed_dim == 64 and task.mae.norm_pix_loss is False and "task.mae.* (5 keys)" in note
    if name == "bert":
        assert task.masking == "word" and old["task"]["whole_word"] is True
        assert "task.whole_word -> task.masking" in note
    if name == "caption":
        assert task.vision_model.depth == 4 and "dropped task.vision_model.decoder_depth" in note
    if name == "ppo":
        assert task.encoder.model.img_size == 56 and "dropped task.encoder.model.decoder_depth" in note
    assert cfg.trainer.max_steps == old["trainer"]["max_steps"]


def test_current_configs_are_read_unchanged_and_bad_ones_still_refused(tmp_path, capsys):
    cfg = load_saved(MAETask, OLD / "mae.yaml")
    current = tmp_path / "config.yaml"
    current.write_text(to_yaml(cfg))
    capsys.readouterr()
    assert load_saved(MAETask, current) == cfg and capsys.readouterr().err == ""      # nothing to migrate: no note
    data = yaml.safe_load((OLD / "mae.yaml").read_text())
    data["task"]["model"]["colour"] = "red"                                         # not a field of either layout
    current.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="unknown config key 'task.vit.colour'"):
        load_saved(MAETask, current)


def to_old_layout(config_file: Path) -> None:
    """Rewrite a current MAE config.yaml as selfsup wrote it before the split (task.vit + task.mae -> task.model)."""
    data = yaml.safe_load(config_file.read_text())
    data["task"]["model"] = {**data["task"].pop("vit"), **data["task"].pop("mae")}
    data["task"].pop("eval_images")                                                 # a later addition
    config_file.write_text(yaml.safe_dump(data))


def test_an_old_mae_run_resumes_evaluates_exports_and_is_an_encoder(tmp_path, capsys):
    micro = ["task.vit.img_size=16", "task.vit.patch_size=4", "task.vit.embed_dim=32", "task.vit.depth=1",
             "task.vit.num_heads=2", "task.mae.decoder_embed_dim=16", "task.mae.decoder_depth=1",
             "task.mae.decoder_num_heads=2", "task.data.num_train=64", "task.data.num_test=32", "task.probe.epochs=2",
             "task.eval_images=32", "trainer.batch_size=16", "trainer.max_steps=4", "trainer.checkpoint_every=2"]
    run = tmp_path / "old"
    train(MAETask, run, micro + ["trainer.stop_at=2"])
    to_old_layout(run / "config.yaml")
    enc = load_image_encoder(str(run))                                   # the vision reader knows the old layout
    assert enc.embed_dim == 32 and enc.input_size == 16
    assert main(["export", "mae", "--checkpoint", str(run), "--out", str(tmp_path / "export")]) == 0
    assert main(["eval", "mae", "--checkpoint", str(run), "--run-dir", str(tmp_path / "eval")]) == 0
    assert main(["train", "mae", "--run-dir", str(run), "--resume", "--set", "trainer.progress=false",
                 "trainer.tensorboard=false"]) == 0
    err = capsys.readouterr().err
    assert "task.model.* (12 keys) -> task.mae.* (5 keys), task.vit.* (7 keys)" in err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "vit" in saved["task"] and "model" not in saved["task"]      # resumed: saved in the current layout
    fresh = tmp_path / "fresh"                                         # the same run, never in the old layout
    train(MAETask, fresh, micro)
    resumed, straight = ViTEncoder.from_checkpoint(run), ViTEncoder.from_checkpoint(fresh)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)          # the old run continued exactly
