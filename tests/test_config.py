"""Config resolution and the errors a user sees for bad keys, values, presets and files."""
import pytest

from selfsup.config import ConfigError, config_hash, resolve, to_object
from selfsup.example import ExampleConfig, ExampleTask

from conftest import run_cli


def cfg(**kw):
    return resolve(ExampleConfig, ExampleTask.presets, **kw)


def test_order_defaults_preset_file_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  lr: 0.5\n  max_steps: 7\ntask:\n  hidden: 8\n")
    c = to_object(cfg(preset="tiny", yaml_file=f, overrides=["trainer.max_steps=9"]))
    assert c.trainer.batch_size == 64          # from the preset
    assert c.trainer.lr == 0.5 and c.task.hidden == 8   # from the file
    assert c.trainer.max_steps == 9            # --set wins
    assert c.task.dim == ExampleConfig().dim   # default


def test_unknown_key_names_key_and_valid_choices():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer.max_step'.*max_steps"):
        cfg(overrides=["trainer.max_step=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'tsk'.*task, trainer"):
        cfg(overrides=["tsk.hidden=3"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"bad value for 'trainer.max_steps'"):
        cfg(overrides=["trainer.max_steps=many"])


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'huge'. Valid presets: default, tiny"):
        cfg(preset="huge")
    with pytest.raises(ConfigError, match="config file not found"):
        cfg(yaml_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must look like key=value"):
        cfg(overrides=["trainer.max_steps"])


@pytest.mark.parametrize("setting, message", [
    ("trainer.batch_size=-4", "trainer.batch_size=-4 is out of range: it must be >= 1"),
    ("trainer.max_steps=-1", "trainer.max_steps=-1 is out of range: it must be >= 0"),
    ("trainer.grad_accum=0", "trainer.grad_accum=0 is out of range: it must be >= 1"),
    ("trainer.log_every=0", "trainer.log_every=0 is out of range: it must be >= 1"),
    ("trainer.ema_decay=1.5", r"trainer.ema_decay=1.5 is out of range: it must be in \[0, 1\)"),
    ("trainer.lr=nan", "trainer.lr=nan is out of range"),
    ("trainer.eps=0", "trainer.eps=0.0 is out of range: it must be > 0"),
    ("trainer.precision=fp8", "trainer.precision must be one of auto, fp32, bf16, fp16, not 'fp8'"),
])
def test_trainer_values_out_of_range_name_the_key(setting, message):
    with pytest.raises(ConfigError, match=message):
        cfg(overrides=[setting])


def test_task_values_out_of_range_name_the_key():
    with pytest.raises(ConfigError, match="task.num_classes=0 must be at least 1"):
        ExampleTask(to_object(cfg(overrides=["task.num_classes=0"])).task)


def test_a_section_given_as_a_list_is_a_clear_error(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  - 1\n  - 2\n")
    with pytest.raises(ConfigError, match=f"{f}: 'trainer' must be a mapping of keys .* not list"):
        cfg(yaml_file=f)
    f.write_text("- trainer\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        cfg(yaml_file=f)


def test_hash_ignores_seed_but_not_lr():
    base = config_hash(cfg())
    assert config_hash(cfg(overrides=["trainer.seed=3"])) == base
    assert config_hash(cfg(overrides=["trainer.lr=0.1"])) != base


@pytest.mark.slow
def test_cli_bad_key_exits_2_with_message(tmp_path):
    out = run_cli("train", "example", "--run-dir", str(tmp_path / "r"), "--set", "trainer.lrr=1")
    assert out.returncode == 2
    assert "unknown config key 'trainer.lrr'" in out.stderr and "lr" in out.stderr
    assert not (tmp_path / "r").exists()       # nothing written for a run that never started
    out = run_cli("train", "no-such-task", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "unknown task 'no-such-task'" in out.stderr and "example" in out.stderr
