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


@pytest.mark.parametrize("text, message", [
    ("[triage]\nmin_fov_mm = nan\n", "triage.min_fov_mm must be a finite number"),
    ("[triage]\nmax_spacing_mm = -1\n", "triage.max_spacing_mm must be > 0"),
    ("[read]\nmin_finite_fraction = 1.5\n", "read.min_finite_fraction must be <= 1"),
    ("[dwi]\ndenoise = 'mpcca'\n", "dwi.denoise must be one of 'mppca'"),
    ("[dwi]\nmotion_shrink_factors = [4, 2, 1]\n", "as many values"),
    ("[arrays]\ncodec = 'NOPE'\n", "arrays.codec must be one of"),
    ("[arrays]\nnormalization = 'none'\n", "arrays.normalization must be one of 'image', 'anatomy'"),
    ("[arrays]\nfolder = '../x'\n", "arrays.folder must be a folder inside OUTPUT"),
    ("[arrays]\nfolder = '/tmp/x'\n", "arrays.folder must be a folder inside OUTPUT"),
    ("[arrays]\nfolder = 'a/../..'\n", "arrays.folder must be a folder inside OUTPUT"),
    ("[arrays]\nspacing_mm = [1.0, 1.0]\n", "arrays.spacing_mm must have 3 values"),
    ("[arrays]\nspacing_mm = [1.0, inf, 1.0]\n", "must be a finite number"),
    ("[iqs]\nmax_iqs = 7\n", "iqs.max_iqs must be <= 5"),
    ("[iqs]\nscore_from = 'median'\n", "iqs.score_from must be one of 'image', 'group'"),
    ("[masks]\nstrip_min_volume_ml = 3000\n", "strip_min_volume_ml must be below"),
    ("[report]\nhigh_percentile = 0.1\n", "low_percentile must be below"),
    ("[execution]\nbuild_batch_size = 0\n", "execution.build_batch_size must be >= 1"),
])
def test_out_of_range_or_unknown_choice_is_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config_text(text)
    assert "\n" not in str(caught.value)


def _numeric_settings() -> list[tuple[str, str]]:
    import dataclasses

    out = []
    for section in dataclasses.fields(CurateConfig):
        values = getattr(CurateConfig(), section.name)
        out += [(section.name, f.name) for f in dataclasses.fields(values)
                if isinstance(getattr(values, f.name), float)]
    return out


@pytest.mark.parametrize("section, name", _numeric_settings())
def test_every_float_setting_refuses_nan(section: str, name: str) -> None:
    # One mechanism (type hints) covers every float, not a list of special cases.
    with pytest.raises(ConfigError, match=f"{section}.{name} must be a finite number"):
        load_config_text(f"[{section}]\n{name} = nan\n")


def test_valid_choices_and_nested_folders_are_accepted() -> None:
    cfg = load_config_text("[dwi]\ndenoise = 'none'\nmotion = 'affine'\n[arrays]\ncodec = 'ZSTD'\n"
                           "normalization = 'anatomy'\nfolder = 'cache/arrays'\n")
    assert (cfg.dwi.denoise, cfg.arrays.codec, cfg.arrays.folder) == ("none", "ZSTD", "cache/arrays")
    assert load_config_text(dump_config(CurateConfig())) == CurateConfig()
