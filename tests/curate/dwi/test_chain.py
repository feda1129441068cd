"""The whole derivation against ground truth, on dipy's real DWI, and on bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate.config import ConfigError, DwiConfig
from curate.dwi.chain import derive
from curate.dwi.gradients import parse_table
from curate.dwi.phantom import gradient_scheme, simulate

_SHAPE = (40, 46, 22)


def _errors(result, phantom) -> tuple[float, float]:
    tissue = (phantom.tissue > 0) & (result.brain_mask > 0)
    fa_err = np.median(np.abs(result.fa - phantom.fa)[tissue])
    md_err = np.median((np.abs(result.md - phantom.md) / phantom.md)[tissue])
    return float(fa_err), float(md_err)


@pytest.mark.slow
@pytest.mark.parametrize("shells", [{1000.0: 30}, {1000.0: 20, 2000.0: 20}],
                         ids=["single-shell", "multi-shell"])
def test_recovers_known_fa_and_md(shells: dict[float, int]) -> None:
    bvals, bvecs = gradient_scheme(3, shells, seed=4)
    phantom = simulate(_SHAPE, 2.5, bvals, bvecs, snr=20, bias=0.25, shifted=(5, 12, 19),
                       shift_vox=1.0, seed=6)
    result = derive(phantom.data, (2.5, 2.5, 2.5), phantom.affine, bvals, bvecs, DwiConfig())
    assert result.ok, result.reason
    fa_err, md_err = _errors(result, phantom)
    assert fa_err < 0.05
    assert md_err < 0.08
    assert result.shells_used == (0.0, 1000.0)  # b = 2000 left out of the tensor fit
    assert result.motion_max_mm == pytest.approx(np.hypot(2.5, 1.5), abs=0.8)
    assert result.motion_mean_mm < 1.0
    assert result.nan_voxels == 0
    truth = phantom.tissue > 0
    dice = 2 * (truth & (result.brain_mask > 0)).sum() / (truth.sum() + result.brain_mask.sum())
    assert dice > 0.9
    assert set(result.timings_s) >= {"denoise", "gibbs", "motion", "bias", "mask", "tensor"}


def test_corrections_beat_no_corrections() -> None:
    bvals, bvecs = gradient_scheme(3, {1000.0: 24}, seed=4)
    phantom = simulate((32, 36, 18), 2.5, bvals, bvecs, snr=12, bias=0.25, seed=7)
    bare = DwiConfig(denoise="none", gibbs=False, motion="none", bias=False)
    full = DwiConfig(gibbs=False, motion="none")
    fa_bare, _ = _errors(derive(phantom.data, (2.5,) * 3, phantom.affine, bvals, bvecs, bare),
                         phantom)
    fa_full, _ = _errors(derive(phantom.data, (2.5,) * 3, phantom.affine, bvals, bvecs, full),
                         phantom)
    assert fa_full < fa_bare  # denoising lowers the noise floor bias of FA


def test_runs_on_dipy_real_dwi(dipy_dwi: tuple[Path, Path, Path]) -> None:
    nii, bval, bvec = dipy_dwi
    img = nib.load(nii)
    data = np.asarray(img.dataobj, np.float32)
    result = derive(data, img.header.get_zooms(), img.affine, parse_table(bval.read_text()),
                    parse_table(bvec.read_text()), DwiConfig())
    assert result.ok, result.reason
    assert result.fa.shape == data.shape[:3] and result.md.shape == data.shape[:3]
    assert 0.0 <= result.fa.min() and result.fa.max() <= 1.0
    assert result.md.min() >= 0.0 and result.md.max() < 0.01  # mm^2/s; free water is 3e-3
    assert result.brain_mask.any() and (result.t2w[result.brain_mask == 0] == 0).all()
    assert np.isfinite(result.t2w).all()


def _good(n_dir: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bvals, bvecs = gradient_scheme(2, {1000.0: n_dir}, seed=1)
    data = simulate((20, 22, 12), 2.5, bvals, bvecs, snr=30, seed=2).data
    return data, bvals, bvecs


@pytest.mark.parametrize("case, expected", [
    ("wrong_count", "volumes"),
    ("zero_bvecs", "zero vectors"),
    ("no_b0", "no b0"),
    ("three_d", "not a 4D diffusion series"),
    ("nan_gradients", "non-finite"),
])
def test_bad_input_gives_a_reason(case: str, expected: str) -> None:
    data, bvals, bvecs = _good()
    if case == "wrong_count":
        bvals, bvecs = bvals[:-1], bvecs[:-1]
    elif case == "zero_bvecs":
        bvecs = np.zeros_like(bvecs)
    elif case == "no_b0":
        bvals = np.full_like(bvals, 1000.0)
    elif case == "three_d":
        data = data[..., 0]
    elif case == "nan_gradients":
        bvals = bvals.copy()
        bvals[4] = np.nan
    result = derive(data, (2.5,) * 3, np.eye(4), bvals, bvecs, DwiConfig())
    assert not result.ok
    assert result.reason_code == "gradients"
    assert expected in result.reason


def test_nan_volumes_are_dropped_with_a_warning() -> None:
    data, bvals, bvecs = _good(14)
    data[..., 5] = np.nan
    data[2, 2, 2, :] = np.nan
    fast = DwiConfig(denoise="none", gibbs=False, motion="none")
    result = derive(data, (2.5,) * 3, np.eye(4), bvals, bvecs, fast)
    assert result.ok, result.reason
    assert any("dropped 1 volume" in w for w in result.warnings)
    assert np.isfinite(result.fa).all()
    # every b0 NaN leaves no b0: a clear reason, not a crash
    data[..., bvals < 50] = np.nan
    result = derive(data, (2.5,) * 3, np.eye(4), bvals, bvecs, fast)
    assert not result.ok and "no b0" in result.reason and "dropped" in result.reason


def test_an_unknown_denoiser_is_refused_with_the_config() -> None:
    # Before any series is read, not as a warning on every series (issue 16, item 7).
    with pytest.raises(ConfigError, match="dwi.denoise must be one of"):
        DwiConfig(denoise="bogus", gibbs=False, motion="none", bias=False)
