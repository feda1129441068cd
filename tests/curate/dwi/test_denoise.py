"""The vectorised MP-PCA against dipy's mppca, and against the noise-free truth."""

from __future__ import annotations

import numpy as np
import pytest

from curate.dwi.denoise import dipy_mppca, mp_noise_variance, mppca, patch2self
from curate.dwi.phantom import gradient_scheme, simulate


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(noisy, clean, mask, bvals) of a small phantom: 3 b0 + 24 directions."""
    bvals, bvecs = gradient_scheme(3, {1000.0: 24}, seed=2)
    noisy = simulate((24, 26, 14), 2.5, bvals, bvecs, snr=15, bias=0.0, seed=3)
    clean = simulate((24, 26, 14), 2.5, bvals, bvecs, snr=None, bias=0.0, seed=3)
    return noisy.data, clean.data, noisy.tissue > 0, bvals


def test_classifier_matches_dipy_loop() -> None:
    from dipy.denoise.localpca import _pca_classifier

    rng = np.random.default_rng(0)
    for n_vols, n_samples in ((30, 125), (130, 125), (8, 27)):
        eig = np.sort(np.abs(rng.normal(size=(20, n_vols))) * rng.uniform(1, 5, (20, 1)), axis=1)
        eig[:5, -3:] *= 50  # a few signal components
        var, n_noise = mp_noise_variance(eig, n_samples)
        for row in range(20):
            ref_var, ref_n = _pca_classifier(eig[row], n_samples)
            assert var[row] == pytest.approx(ref_var, rel=1e-9)
            assert n_noise[row] == ref_n


def test_stride_one_reproduces_dipy(series) -> None:
    noisy, _, mask, _ = series
    ref = dipy_mppca(noisy, mask)
    ours = mppca(noisy, mask, stride=1)
    ok = mask & np.isfinite(ref).all(axis=-1)
    change = np.abs(ref - noisy)[ok].mean()
    assert change > 1.0  # dipy really denoised something
    assert np.abs(ours - ref)[ok].mean() < 1e-3 * change  # < 0.1 % of the change
    assert np.percentile(np.abs(ours - ref)[ok], 99) < 0.01 * change


def test_default_stride_denoises_as_well_as_dipy(series) -> None:
    noisy, clean, mask, _ = series
    ref = dipy_mppca(noisy, mask)
    ours = mppca(noisy, mask, stride=2, threads=2)
    ok = mask & np.isfinite(ref).all(axis=-1)

    def rmse(x: np.ndarray) -> float:
        return float(np.sqrt(((x - clean)[ok] ** 2).mean()))

    assert rmse(ours) < 0.8 * rmse(noisy)
    assert rmse(ours) < 1.1 * rmse(ref)
    assert np.array_equal(ours[~mask], noisy[~mask])  # outside the mask: untouched


def test_patch2self_option_runs_and_reduces_noise(series) -> None:
    noisy, clean, mask, bvals = series
    out = patch2self(noisy, bvals)
    assert out.shape == noisy.shape
    assert np.sqrt(((out - clean)[mask] ** 2).mean()) < np.sqrt(((noisy - clean)[mask] ** 2).mean())


def test_too_small_series_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="smaller than one patch"):
        mppca(np.ones((10, 8, 2, 12), np.float32))
