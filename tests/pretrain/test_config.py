"""Pre-training config: TOML round trip, defaults from the papers, clear errors."""

from __future__ import annotations

import pytest

from pretrain.config import (
    ConfigError,
    PretrainConfig,
    dump_config,
    load_config,
    load_config_text,
    override,
)


def test_defaults_are_the_s3d_configuration() -> None:
    cfg = PretrainConfig()
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (1e-2, 0.99, 3e-5)
    assert cfg.optim.nesterov and cfg.optim.poly_exponent == 0.9
    assert (cfg.optim.max_steps, cfg.optim.grad_clip) == (250_000, 12.0)
    assert (cfg.data.patch_size, cfg.data.batch_size) == (160, 8)
    assert (cfg.masking.ratio_min, cfg.masking.ratio_max) == (0.6, 0.9)
    assert cfg.model.name == "resenc-l" and cfg.run.bf16


def test_dump_then_load_gives_an_equal_config(tmp_path) -> None:
    cfg = override(PretrainConfig(), optim={"lr": 3e-3}, data={"max_iqs": 2.5},
                   masking={"block_size": 16})
    path = tmp_path / "config.toml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_override_ignores_flags_that_were_not_given() -> None:
    cfg = override(PretrainConfig(), optim={"lr": None, "max_steps": 7})
    assert cfg.optim.lr == 1e-2 and cfg.optim.max_steps == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optim]\nlrr = 1.0\n", "unknown setting"),
        ("[masking]\nratio_min = 0.9\nratio_max = 0.6\n", "ratio"),
        ('[model]\nname = "vit"\n', "model.name"),
        ("[data]\nbatch_size = 2.5\n", "data.batch_size must be int"),
        ("[optim\n", "invalid TOML"),
    ],
)
def test_bad_settings_give_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config_text(text)


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")
