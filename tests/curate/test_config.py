"""TOML configs load into frozen dataclasses, reject mistakes and round-trip."""

from __future__ import annotations

import pytest

from curate.config import ConfigError, CurateConfig, dump_config, fingerprint, load_config, load_config_text


def test_partial_config_keeps_defaults() -> None:
    cfg = load_config_text("[triage]\nmax_spacing_mm = 5\n")
    assert cfg.triage.max_spacing_mm == 5.0
    assert cfg.triage.min_fov_mm == CurateConfig().triage.min_fov_mm


@pytest.mark.parametrize("text, message", [
    ("[triage]\nmin_fov = 3\n", "unknown setting"),
    ("[nonsense]\n", "unknown setting"),
    ("[triage]\nmin_file_size_bytes = 'big'\n", "must be int"),
    ("[triage\n", "invalid TOML"),
    ("[masks]\nbrain_model = 'hd-bet'\n", "brain_model"),
    ("[masks]\nstrip_dip_scale = 0.0\n", "strip_dip_scale"),
    ("[masks]\nblur_min_face_fraction = 1.5\n", "blur_min_face_fraction"),
    ("[masks]\nstrip_min_volume_ml = 3000.0\n", "strip_min_volume_ml"),
])
def test_bad_config_raises_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config_text(text)


def test_dumped_config_loads_back_equal(tmp_path) -> None:
    cfg = load_config_text("[triage]\nmin_fov_mm = 42.0\n")
    path = tmp_path / "c.toml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_missing_config_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_fingerprint_changes_with_settings() -> None:
    a = CurateConfig()
    b = load_config_text("[read]\nmin_finite_fraction = 0.5\n")
    assert fingerprint(a.read) != fingerprint(b.read)
    assert fingerprint(a.triage) == fingerprint(b.triage)
