"""Measures on synthetic volumes with analytic answers, and MRIQC's formulas written out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from qc import measures


def _rayleigh(sigma: float, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.hypot(rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))


def test_rayleigh_sigma_recovers_the_noise_level() -> None:
    air = _rayleigh(7.0, (200_000,))
    assert measures.rayleigh_sigma(air) == pytest.approx(7.0, rel=0.02)


def test_rayleigh_sigma_of_empty_or_zero_air_is_nan() -> None:
    assert math.isnan(measures.rayleigh_sigma(np.array([])))
    assert math.isnan(measures.rayleigh_sigma(np.zeros(100)))


def test_residual_sigma_recovers_white_noise_on_a_ramp() -> None:
    rng = np.random.default_rng(1)
    ramp = np.add.outer(np.add.outer(np.arange(64.0), np.arange(64.0)), np.arange(64.0))
    noisy = 100 + 3 * ramp + rng.normal(0, 5.0, ramp.shape)
    assert measures.residual_sigma(noisy) == pytest.approx(5.0, rel=0.05)


def test_mad_std_is_normal_consistent() -> None:
    values = np.random.default_rng(2).normal(10, 4.0, 400_000)
    assert measures.mad_std(values) == pytest.approx(4.0, rel=0.01)


# MRIQC 24 formulas, written out here independently of qc.measures.
def _mriqc_snr(mu, sd, n):
    return mu / (sd * math.sqrt(n / (n - 1)))


def _mriqc_snr_d(mu, mad_air):
    return 0.6551364 * mu / mad_air


def _mriqc_cnr(mu_wm, mu_gm, s_air, s_wm, s_gm):
    return abs(mu_wm - mu_gm) / math.sqrt(s_air**2 + s_gm**2 + s_wm**2)


def _mriqc_cjv(mu_wm, mu_gm, s_wm, s_gm):
    return (s_wm + s_gm) / abs(mu_wm - mu_gm)


def _mriqc_efc(img, framemask=None):
    if framemask is None:
        framemask = np.zeros_like(img, dtype=np.uint8)
    n_vox = np.sum(1 - framemask)
    efc_max = 1.0 * n_vox * (1.0 / np.sqrt(n_vox)) * np.log(1.0 / np.sqrt(n_vox))
    b_max = np.sqrt((img[framemask == 0] ** 2).sum())
    return float((1.0 / efc_max) * np.sum((img[framemask == 0] / b_max)
                                          * np.log((img[framemask == 0] + 1e-16) / b_max)))


def _mriqc_fber(img, headmask):
    fg = np.median(np.abs(img[headmask > 0]) ** 2)
    bg = np.median(np.abs(img[headmask == 0]) ** 2)
    return float(fg / bg)


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sphere with two 'tissues' in Rayleigh air: image, head, wm and gm masks."""
    grid = np.indices((48, 48, 48)) - 23.5
    r = np.sqrt((grid**2).sum(0))
    head, wm = r < 18, r < 10
    gm = head & ~wm
    rng = np.random.default_rng(3)
    image = np.where(wm, 120.0, np.where(gm, 80.0, 0.0))
    image = np.hypot(image + rng.normal(0, 4, image.shape), rng.normal(0, 4, image.shape))
    return image, head, wm, gm


def test_snr_cnr_cjv_match_mriqc(phantom) -> None:
    image, head, wm, gm = phantom
    air = image[~ndi.binary_dilation(head, iterations=2)]
    w, g = image[wm], image[gm]
    mu_w, mu_g = float(np.median(w)), float(np.median(g))
    assert measures.snr(mu_w, float(w.std()), w.size) == pytest.approx(_mriqc_snr(mu_w, w.std(), w.size))
    mad_air = measures.mad_std(air)
    assert measures.snr_dietrich(mu_w, mad_air) == pytest.approx(_mriqc_snr_d(mu_w, mad_air), rel=1e-6)
    assert measures.cnr(mu_w, mu_g, air.std(), w.std(), g.std()) == pytest.approx(
        _mriqc_cnr(mu_w, mu_g, air.std(), w.std(), g.std()))
    s_w, s_g = measures.mad_std(w), measures.mad_std(g)
    assert measures.cjv(mu_w, mu_g, s_w, s_g) == pytest.approx(_mriqc_cjv(mu_w, mu_g, s_w, s_g))


def test_snr_of_the_phantom_is_close_to_its_design(phantom) -> None:
    image, head, wm, _ = phantom
    w = image[wm]
    # Rician at SNR 30 is nearly Gaussian: mean 120, sd 4.
    assert measures.snr(float(np.median(w)), float(w.std()), w.size) == pytest.approx(30, rel=0.05)


def test_efc_and_fber_match_mriqc(phantom) -> None:
    image, head, _, _ = phantom
    assert measures.efc(image) == pytest.approx(_mriqc_efc(image), rel=1e-9)
    frame = np.zeros(image.shape, np.uint8)
    frame[:2] = 1
    assert measures.efc(image, frame) == pytest.approx(_mriqc_efc(image, frame), rel=1e-9)
    assert measures.fber(image, head) == pytest.approx(_mriqc_fber(image, head.astype(np.uint8)))


def test_efc_is_one_for_a_uniform_image_and_zero_for_one_voxel() -> None:
    assert measures.efc(np.full((8, 8, 8), 5.0)) == pytest.approx(1.0)
    spike = np.zeros((8, 8, 8))
    spike[3, 3, 3] = 9.0
    assert measures.efc(spike) == pytest.approx(0.0, abs=1e-12)


def test_fber_analytic_and_nan_on_zero_background() -> None:
    image = np.ones((10, 10, 10))
    head = np.zeros(image.shape, bool)
    head[2:8, 2:8, 2:8] = True
    image[head] = 10.0
    assert measures.fber(image, head) == pytest.approx(100.0)
    image[~head] = 0.0
    assert math.isnan(measures.fber(image, head))  # MRIQC returns -1 here


def test_undefined_inputs_give_nan_not_sentinels() -> None:
    assert math.isnan(measures.snr_dietrich(100.0, 0.0))  # MRIQC: -1
    assert math.isnan(measures.cjv(5.0, 5.0, 1.0, 1.0))
    assert math.isnan(measures.cnr(5.0, 5.0, 0.0, 0.0, 0.0))
    assert math.isnan(measures.efc(np.zeros((4, 4, 4))))
    assert math.isnan(measures.snr(1.0, 0.0, 10))


@pytest.mark.parametrize("width", [3.0, 5.0])
def test_fwhm_of_smoothed_white_noise_matches_the_kernel(width: float) -> None:
    noise = np.random.default_rng(4).normal(0, 1, (64, 64, 64))
    field = ndi.gaussian_filter(noise, width / (2 * math.sqrt(2 * math.log(2))), mode="wrap")
    estimate, sharpness = measures.fwhm(field, np.ones(field.shape, bool), (1.0, 1.0, 2.0))
    assert estimate == pytest.approx(width * (1 + 1 + 2) / 3, rel=0.1)
    assert 0 < sharpness < 1


def test_fwhm_noise_correction_removes_added_white_noise() -> None:
    rng = np.random.default_rng(5)
    field = ndi.gaussian_filter(rng.normal(0, 10, (64, 64, 64)), 4 / 2.3548, mode="wrap")
    noisy = field + rng.normal(0, 0.5 * field.std(), field.shape)
    mask = np.ones(field.shape, bool)
    raw, _ = measures.fwhm(noisy, mask, (1, 1, 1))
    corrected, _ = measures.fwhm(noisy, mask, (1, 1, 1), sigma=0.5 * field.std())
    assert raw < 3.0
    assert corrected == pytest.approx(4.0, rel=0.1)


def test_patch_noise_scale_is_unbiased_on_white_noise_and_robust_to_texture() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 2.0, (40, 64, 64)).astype(np.float32)
    assert measures.residual_sigma(100 + noise, quantile=0.1) == pytest.approx(2.0, rel=0.05)
    # texture in a third of the volume (a fine checkerboard of +-10): the MAD reads it as noise,
    # the flattest patches do not
    textured = 100 + noise
    checker = (np.indices(textured.shape).sum(axis=0) % 2 * 20 - 10).astype(np.float32)
    textured[:, :, :21] += checker[:, :, :21]
    assert measures.residual_sigma(textured, quantile=0.1) == pytest.approx(2.0, rel=0.1)
    assert measures.residual_sigma(textured) > 3.0


def test_residual_sigma_is_orientation_free() -> None:
    rng = np.random.default_rng(4)
    x = (100 + rng.normal(0, 1.0, (30, 40, 50))).astype(np.float32)
    values = [measures.residual_sigma(np.transpose(x, axes), quantile=0.1) for axes in ((0, 1, 2), (2, 0, 1))]
    assert values[0] == pytest.approx(values[1], rel=0.03)


def test_fwhm_in_units_of_the_coarser_of_voxel_and_1mm() -> None:
    rng = np.random.default_rng(5)
    field = ndi.gaussian_filter(rng.normal(0, 1, (48, 48, 48)), 2.0).astype(np.float32)
    mask = np.ones(field.shape, bool)
    mm_1, _ = measures.fwhm(field, mask, (1.0, 1.0, 1.0), unit_floor=1.0)
    mm_2, _ = measures.fwhm(field, mask, (2.0, 2.0, 2.0), unit_floor=1.0)
    sub, _ = measures.fwhm(field, mask, (0.8, 0.8, 0.8), unit_floor=1.0)
    assert mm_2 == pytest.approx(mm_1)  # coarse voxels: in voxels
    assert sub == pytest.approx(0.8 * mm_1)  # sub-mm voxels: in mm
