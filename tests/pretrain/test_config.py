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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optim]\nlr = nan\n", "optim.lr must be a finite number > 0, got nan"),
        ("[optim]\nlr = inf\n", "optim.lr"),
        ("[optim]\nweight_decay = -1e-5\n", "optim.weight_decay must be a finite number >= 0"),
        ("[optim]\ngrad_clip = -1.0\n", "optim.grad_clip"),
        ("[optim]\ngrad_clip = nan\n", "optim.grad_clip"),
        ("[optim]\nmomentum = 1.5\n", "optim.momentum"),
        ("[optim]\npoly_exponent = -0.9\n", "optim.poly_exponent"),
        ("[optim]\nmax_steps = 0\n", "optim.max_steps"),
        ("[data]\nval_fraction = 2.0\n", r"data.val_fraction must be in \[0, 1\), got 2.0"),
        ("[data]\nworkers = -3\n", "data.workers must be >= 0, got -3"),
        ("[data]\nmax_iqs = nan\n", "data.max_iqs must be a finite"),
        ("[data]\nmax_iqs_by_modality = { FA = nan }\n", "data.max_iqs_by_modality.FA"),
        ("[data]\nmax_iqs_by_modality = { Fa = 3.5 }\n", "unknown value.*'Fa'"),
        ('[data]\nmodalities = ["T1w", "T1"]\n', "data.modalities: unknown value.*'T1'"),
        ('[data]\nexclude_anonymization = ["skullstripped"]\n', "exclude_anonymization"),
        ('[data]\nbalance = "subjects"\n', "data.balance"),
        ("[data]\nbalance_alpha = 1.5\n", "data.balance_alpha"),
        ('[data]\ndatasets = ["a"]\nexclude_datasets = ["a"]\n', "both name a"),
        ("[run]\nseed = -1\n", "run.seed"),
    ],
)
def test_out_of_range_values_are_refused_at_load_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config_text(text)
    assert "\n" not in str(info.value)


def test_a_selection_config_round_trips_and_becomes_a_manifest_selection(tmp_path) -> None:
    text = ('[data]\nmodalities = ["T1w", "FA"]\nexclude_datasets = ["ds1"]\nmax_iqs = 3.0\n'
            'exclude_anonymization = ["skull_stripped"]\nbalance = "dataset"\nbalance_alpha = 0.5\n'
            '[data.max_iqs_by_modality]\nFA = 3.5\n')
    cfg = load_config_text(text)
    assert load_config_text(dump_config(cfg)) == cfg
    sel = cfg.data.selection()
    assert sel.modalities == ("T1w", "FA") and sel.datasets is None and sel.included is True
    assert sel.max_iqs_by_modality == (("FA", 3.5),) and sel.exclude_datasets == ("ds1",)
