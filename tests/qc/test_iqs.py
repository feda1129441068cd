"""IQS rules, the calibration file, and scores of degraded real images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qc.iqs import (DEFAULT_CALIBRATION, CalibrationError, FlagRules, combine, interpolate,
                    load_calibration, score)
from qc.profile import Profile, measure_image


@pytest.fixture(scope="module")
def calibration():
    return load_calibration()


def test_combine_follows_openmind() -> None:
    assert combine([1.0, 2.0, 3.0], False, False) == 2.0
    assert combine([1.0, 2.0, 3.0], True, False) == 3.0
    assert combine([4.5, 4.5, 4.5], True, False) == 5.0  # +1 capped at 5
    assert combine([1.0, 1.0, 5.0], False, False) == 5.0
    assert combine([1.0, 1.0, 1.0], False, True) == 5.0
    assert combine([math.nan, 2.0, 4.0], False, False) == 3.0
    assert combine([math.nan] * 3, False, False) == 5.0


def test_interpolate_clamps_to_the_scale() -> None:
    knots = {"x": [1.0, 2.0], "y": [1.0, 5.0]}
    assert interpolate(0.0, knots) == 1.0 and interpolate(9.0, knots) == 5.0
    assert interpolate(1.5, knots) == 3.0 and math.isnan(interpolate(math.nan, knots))


def test_calibration_file_is_monotone_and_per_family(calibration) -> None:
    assert calibration.version == "iqs_v2"
    assert calibration.family_of("FA") == "FA" and calibration.family_of("MD") == "MD"
    assert calibration.family_of("T1w") == "structural" and calibration.family_of("FLAIR") == "structural"
    for name in ("FA", "MD"):
        assert "artifact" not in calibration.families[name]["components"]
    for family in calibration.families.values():
        for spec in family["components"].values():
            for knots in spec.values():
                assert np.all(np.diff(knots["x"]) > 0) and np.all(np.diff(knots["y"]) > 0)
                assert knots["y"][0] == 1.0


def test_bad_calibration_file_gives_a_clear_error(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": "x", "families": {}}))
    with pytest.raises(CalibrationError, match="structural"):
        load_calibration(path)
    with pytest.raises(CalibrationError):
        load_calibration(tmp_path / "missing.json")
    assert DEFAULT_CALIBRATION.exists()


def test_constant_and_nan_images_are_corrupted_not_crashes(calibration) -> None:
    for data in (np.zeros((20, 20, 20)), np.full((20, 20, 20), np.nan), np.full((20, 20, 20), 3.0)):
        result = score(measure_image(data), "T1w", calibration)
        assert result.corrupted and result.iqs == 5.0


def test_fov_flag_for_a_head_cut_by_the_volume(calibration) -> None:
    profile = Profile(head_fraction=0.2, border_truncation=0.3, noise_sigma=1.0, signal=100.0,
                      fwhm_mm=7.0)
    result = score(profile, "T1w", calibration, FlagRules(max_border_fraction=0.1))
    assert result.fov_suboptimal and not result.corrupted
    clean = score(Profile(head_fraction=0.2, border_truncation=0.0, noise_sigma=1.0, signal=100.0,
                          fwhm_mm=7.0), "T1w", calibration)
    assert result.iqs == pytest.approx(min(5.0, clean.iqs + 1.0))


# Degradations of real scans (noise, blur, ghost, motion, bias, on every CI scan) are
# tested in test_iqs_metamorphic.py, and on the whole corpus in benchmarks/bench_iqs_metamorphic.py.


@pytest.fixture(scope="module")
def head_clean(head_template, calibration):
    data = np.asarray(head_template.dataobj, np.float32)
    zooms = tuple(float(z) for z in head_template.header.get_zooms()[:3])
    return score(measure_image(data, zooms, skip_faces=((2, 0),)), "T1w", calibration)


def test_clean_real_images_score_in_range(head_clean) -> None:
    assert 1.0 <= head_clean.iqs <= 5.0 and not head_clean.corrupted and not head_clean.fov_suboptimal


def test_fit_knots_drops_levels_that_do_not_rise_and_flat_measures() -> None:
    from qc.calibrate import fit_knots

    def series(values):
        return {"img": [{"m": v} for v in values]}

    knots = fit_knots(series([1.0, 2.0, 2.05, 4.0, 8.0]), "m")
    assert knots == {"x": [1.0, 2.0, 4.0, 8.0], "y": [1.0, 2.0, 4.0, 5.0]}
    assert fit_knots(series([1.0, 1.05, 1.2, 1.3, 1.4]), "m") is None  # severest < 50 % above clean
    assert fit_knots(series([math.nan] * 5), "m") is None


def _raw_entry(source: str, template: bool, scale: float) -> dict:
    def prof(nsr: float, fwhm: float, ghost: float, inu: float, spike: float) -> dict:
        return {"signal": 100.0, "noise_sigma": 100.0 * nsr, "fwhm_mm": fwhm, "ghost": ghost,
                "inu": inu, "spike": spike}

    profiles = {"clean": prof(0.02 * scale, 3.0 * scale, 0.01, 0.05, 0.8)}
    for i, level in enumerate((0.02, 0.04, 0.08, 0.16)):
        profiles[f"deg/noise/{level:g}"] = prof(0.02 * scale + level, 3.0, 0.01, 0.05, 0.8)
    for i, level in enumerate((1.5, 3.0, 5.0)):
        profiles[f"deg/blur/{level:g}"] = prof(0.02, 3.0 * scale + 2 * level, 0.01, 0.05, 0.8)
    return {"source": source, "is_template": template, "modality": "T1w", "profiles": profiles}


def test_real_fit_is_monotone_leaves_out_templates_and_the_held_out_source() -> None:
    from qc import calibrate_real

    levels = {"noise": (0.02, 0.04, 0.08, 0.16), "blur": (1.5, 3.0, 5.0), "ghost": (), "bias": (),
              "spike": ()}
    raw = {"a": _raw_entry("s1", False, 1.0), "b": _raw_entry("s2", False, 1.2),
           "t": _raw_entry("s3", True, 10.0)}
    fit = calibrate_real.fit_structural(raw, levels)
    for spec in fit.values():
        for knots in spec.values():
            assert np.all(np.diff(knots["x"]) > 0) and knots["y"][0] == 1.0
    # the template (10x the measures) is not in the fit: every knot is below its clean value
    assert fit["noise"]["nsr"]["x"][-1] < 0.2 and fit["blur"]["fwhm_mm"]["x"][0] < 4.0
    without_s2 = calibrate_real.fit_structural(raw, levels, exclude="s2")
    assert without_s2["noise"]["nsr"]["x"][0] == pytest.approx(0.02)  # only s1's clean value left
