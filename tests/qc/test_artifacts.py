"""Artifact measures, regions and the whole profile on synthetic volumes and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qc import artifacts, degrade, regions
from qc.profile import measure_image


def _head(shape=(64, 64, 64), sigma=2.0, seed=0) -> np.ndarray:
    """Ellipsoid 'head' with a brighter core in Rayleigh air."""
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    r = np.sqrt(((grid / (np.array(shape)[:, None, None, None] * 0.35)) ** 2).sum(0))
    image = np.where(r < 0.6, 150.0, np.where(r < 1.0, 90.0, 0.0))
    return degrade.rician_noise(image, sigma, np.random.default_rng(seed))


def test_split_finds_head_and_air_of_a_phantom() -> None:
    reg = regions.split(_head())
    assert reg.air_reason is None
    assert 0.1 < reg.head.mean() < 0.3
    assert not (reg.head & reg.air).any()


def test_split_reports_zero_filled_background() -> None:
    image = _head()
    image[image < 30] = 0
    reg = regions.split(image)
    assert reg.air_reason is not None and "zero-filled" in reg.air_reason


def test_ghost_ratio_grows_with_ghost_amplitude() -> None:
    values = []
    for amplitude in (0.0, 0.05, 0.2):
        reg = regions.split(degrade.nyquist_ghost(_head(), amplitude, axis=1))
        values.append(artifacts.ghost_ratio(reg.work, reg.head, reg.air, 1, 150.0))
    assert values[0] < 0.01 < values[1] < values[2]


def test_air_artifact_fraction_is_near_zero_for_pure_noise() -> None:
    reg = regions.split(_head())
    assert artifacts.air_artifact_fraction(reg.work, reg.air, 2.0) < 1e-3
    ghosted = regions.split(degrade.nyquist_ghost(_head(), 0.2, axis=1))
    assert artifacts.air_artifact_fraction(ghosted.work, ghosted.air, 2.0) > 0.05


def test_spike_score_flags_a_kspace_spike() -> None:
    clean = _head()
    assert artifacts.spike_score(degrade.kspace_spike(clean, 0.2)) > artifacts.spike_score(clean) + 1.0


def test_border_truncation_sees_a_cut_head_but_skips_the_inferior_face() -> None:
    head = np.zeros((20, 20, 20), bool)
    head[5:15, 5:15, 0:12] = True
    assert artifacts.border_truncation(head) == pytest.approx(1.0)  # cut flat: the whole cross-section
    ball = np.sum((np.indices((21, 21, 21)) - 10.0) ** 2, axis=0) <= 100  # touches every face at a point
    assert artifacts.border_truncation(ball) < 0.05
    assert artifacts.border_truncation(head, skip=((2, 0),)) == 0.0


def test_bad_slices_counts_interior_zero_and_duplicated_slices() -> None:
    image = _head((32, 32, 32))
    assert artifacts.bad_slices(image) == 0
    image[:, :, 16] = 0
    assert artifacts.bad_slices(image) == 1
    image[:, :, 10] = image[:, :, 9]
    assert artifacts.bad_slices(image) == 2


def test_inu_spread_measures_a_bias_field_on_uniform_tissue() -> None:
    box = np.zeros((48, 48, 48))
    box[4:-4, 4:-4, 4:-4] = 100.0
    clean = degrade.rician_noise(box, 2.0, np.random.default_rng(1))
    inside = box > 0
    assert artifacts.inu_spread(clean, inside, 0.0) < 0.01
    biased = degrade.bias_field(clean, 0.5)
    # the field is exp(0.5 f) with max |f| = 1: its log has a std of a good part of 0.5
    assert 0.1 < artifacts.inu_spread(biased, inside, 0.0) < 0.5


@pytest.mark.parametrize("bad", ["constant", "zeros", "nan", "nan_background", "tiny", "4d"])
def test_profile_never_raises_on_bad_input(bad: str) -> None:
    data = {
        "constant": np.full((16, 16, 16), 7.0),
        "zeros": np.zeros((16, 16, 16)),
        "nan": np.full((16, 16, 16), np.nan),
        "tiny": np.ones((2, 2, 2)),
        "4d": np.stack([_head((24, 24, 24))] * 3, axis=-1),
    }.get(bad)
    if bad == "nan_background":
        data = _head((32, 32, 32))
        data[data < 30] = np.nan
    profile = measure_image(data)
    assert profile.notes, "an unusual input must leave a note"
    if bad in ("constant", "zeros", "nan", "tiny"):
        assert math.isnan(profile.snr) and math.isnan(profile.noise_sigma)


def test_profile_of_a_clean_phantom_is_finite() -> None:
    profile = measure_image(_head())
    for name in ("noise_sigma", "snr", "snr_dietrich", "cnr", "cjv", "efc", "fber", "fwhm_mm", "ghost"):
        assert math.isfinite(getattr(profile, name)), name
    # one estimator for every image (the tissue residual); the air's beside it agrees here
    assert profile.noise_source == "residual"
    assert profile.noise_sigma == pytest.approx(2.0, rel=0.1)
    assert profile.noise_air == pytest.approx(2.0, rel=0.1)


def test_bad_slices_ignore_empty_edge_slices_and_zero_background() -> None:
    image = _head((40, 40, 40))
    reg = regions.split(image)
    image[:, :, 0] = 0  # an empty edge slice, outside the anatomy
    image[:, :, 1] = image[:, :, 0]  # and its duplicate
    assert artifacts.bad_slices(image, reg.head, reg.step) == 0
    image[:, :, 20] = 0  # zeroed through the middle of the head
    assert artifacts.bad_slices(image, reg.head, reg.step) == 1


def test_padding_and_an_empty_edge_slice_change_no_measure() -> None:
    image = _head((48, 48, 48))
    base = measure_image(image)
    for moved in (np.pad(image, 16), np.concatenate([image, np.zeros((1, 48, 48), image.dtype)])):
        other = measure_image(moved)
        for name in ("noise_sigma", "signal", "fwhm_mm", "ghost", "inu", "border_truncation", "head_fraction"):
            assert getattr(other, name) == pytest.approx(getattr(base, name), rel=1e-6), name
        assert other.bad_slices == base.bad_slices == 0
