"""Settings precedence (flags > env > file > defaults) and config-file validation."""

from __future__ import annotations

import pytest

from engine.settings import EngineOptions, Kernels
from starcli import config
from starcli.config import ConfigError, Settings, read_config, resolve


def test_defaults_live_in_one_place():
    settings = resolve({})
    assert settings == Settings()
    assert settings.block_size is None  # auto: engine.plan.default_block_size
    assert settings.anchor_size is None  # the anchor is as long as a block
    assert settings.max_tokens is None  # engine.settings.DEFAULT_MAX_TOKENS, fitted by the run plan
    assert settings.engine_options() == EngineOptions()  # the engine's own defaults


def test_attention_modes_match_the_engine():
    from engine.modes import MODES

    assert set(config.ATTENTION_MODES) == {str(mode) for mode in MODES}


def test_engine_options_are_read_from_the_environment_once(monkeypatch):
    environ = {"STARCLI_SHARE_ANCHOR": "0", "STARCLI_KERNELS": "reference", "STARCLI_TIMEOUT": "12.5"}
    options = resolve({}, {}, environ).engine_options()
    assert options == EngineOptions(share_anchor=False, kernels=Kernels.REFERENCE, collective_timeout_s=12.5)
    with pytest.raises(ConfigError, match="STARCLI_TIMEOUT must be a positive number"):
        resolve({}, {}, {"STARCLI_TIMEOUT": "-1"})
    with pytest.raises(ConfigError, match="STARCLI_FUSED must be 1 or 0"):
        resolve({}, {}, {"STARCLI_FUSED": "maybe"})
    assert resolve({}, {"compile": True}, {}).compile is True  # the config file sets them too


def test_file_beats_defaults_and_given_beats_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('block-size = 512\nattention = "global"\ntemperature = 1\nmodel = "some/model"\n')
    values, warnings = read_config(path)
    assert warnings == []
    assert values == {"block_size": 512, "attention": "global", "temperature": 1.0, "model": "some/model"}
    settings = resolve({"block_size": 128, "attention": None}, values)
    assert settings.block_size == 128  # given (flag or env) wins
    assert settings.attention == "global"  # None means "not given": the file's value stays
    assert isinstance(settings.temperature, float)


def test_config_path_follows_xdg_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("STARCLI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config.config_path() == tmp_path / "starcli" / "config.toml"
    monkeypatch.setenv("STARCLI_CONFIG", str(tmp_path / "other.toml"))
    assert config.config_path() == tmp_path / "other.toml"


def test_missing_file_is_no_error(tmp_path):
    assert read_config(tmp_path / "absent.toml") == ({}, [])


def test_unknown_key_warns(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("blok_size = 3\n")
    values, warnings = read_config(path)
    assert values == {}
    assert len(warnings) == 1 and "blok_size" in warnings[0]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("block_size = 'big'", "must be an integer"),
        ("block_size = true", "must be an integer"),
        ("block_size = 0", "at least 1"),
        ("anchor_size = -1", "at least 0"),
        ("temperature = 'hot'", "must be a number"),
        ("attention = 'sparse'", "must be one of"),
        ("device = 'tpu'", "must be one of"),
        ("model = 3", "must be a string"),
        ("block_size = ", "cannot read config file"),
    ],
)
def test_bad_file_values_are_errors(tmp_path, text, fragment):
    path = tmp_path / "config.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=fragment):
        read_config(path)


def test_given_values_are_checked_too():
    with pytest.raises(ConfigError, match="--nproc must be at least 1"):
        resolve({"nproc": 0})


def test_several_nodes_come_from_file_variable_or_flag_and_need_an_endpoint(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text('nnodes = 2\nrdzv-endpoint = "node1:29400"\nrdzv-id = "job-7"\n')
    settings = resolve({}, read_config(path)[0])
    assert (settings.nnodes, settings.rdzv_endpoint, settings.rdzv_id) == (2, "node1:29400", "job-7")
    assert resolve({"nnodes": 4}, read_config(path)[0]).nnodes == 4  # a flag (or variable) beats the file
    assert config.ENV_VARS["rdzv_endpoint"] == "STARCLI_RDZV_ENDPOINT"
    with pytest.raises(ConfigError, match="--nnodes 2 needs --rdzv-endpoint HOST:PORT"):
        resolve({"nnodes": 2})
    with pytest.raises(ConfigError, match="must be HOST:PORT"):
        resolve({"nnodes": 2, "rdzv_endpoint": "node1"})
    with pytest.raises(ConfigError, match="--attention global runs on one rank"):
        resolve({"nnodes": 2, "rdzv_endpoint": "[::1]:29400", "attention": "global"})
    with pytest.raises(ConfigError, match="--nnodes must be at least 1"):
        resolve({"nnodes": 0})
