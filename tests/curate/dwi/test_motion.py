"""Motion correction, bias field, brain mask and tensor fit on analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from curate.dwi.bias import apply_field, n4_field
from curate.dwi.mask import brain_mask, head_mask
from curate.dwi.motion import MotionSettings, correct_motion, displacement, rotate_bvecs
from curate.dwi.phantom import gradient_scheme, simulate
from curate.dwi.tensor import fit_tensor


@pytest.fixture(scope="module")
def phantom():
    bvals, bvecs = gradient_scheme(2, {1000.0: 10}, seed=1)
    return simulate((40, 44, 24), 2.5, bvals, bvecs, snr=40, bias=0.0, shifted=(4,),
                    shift_vox=1.2, seed=5)


def test_shifted_volume_is_found_and_realigned(phantom) -> None:
    ref = phantom.data[..., phantom.bvals < 50].mean(axis=3)
    head = head_mask(ref)
    out = correct_motion(phantom.data[..., :7], (2.5, 2.5, 2.5), ref, phantom.bvecs[:7], head,
                         flip_x=False, settings=MotionSettings(), threads=2)
    # the simulated shift moved content by (+1.2, -0.72, 0) voxels = (3.0, -1.8, 0) mm
    assert out.matrices[4][:3, 3] == pytest.approx([3.0, -1.8, 0.0], abs=0.5)
    assert out.displacement_mm[4] == pytest.approx(np.hypot(3.0, 1.8), abs=0.5)
    assert np.delete(out.displacement_mm, 4).max() < 0.6
    b0_mask = head & (phantom.tissue > 0)
    before = np.abs(phantom.data[..., 4] - phantom.data[..., 5])[b0_mask].mean()
    after = np.abs(out.data[..., 4] - out.data[..., 5])[b0_mask].mean()
    assert after < before


def test_bvecs_rotate_by_the_inverse_rotation() -> None:
    angle = np.deg2rad(10)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rot
    g = np.array([[1.0, 0.0, 0.0]])
    plain = rotate_bvecs(g, matrix[None], flip_x=False)[0]
    assert plain == pytest.approx([np.cos(angle), -np.sin(angle), 0.0])
    flipped = rotate_bvecs(g, matrix[None], flip_x=True)[0]  # FSL x axis is mirrored
    assert flipped == pytest.approx([np.cos(angle), np.sin(angle), 0.0])
    assert displacement(matrix, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])) == 0.0


def test_n4_recovers_a_smooth_field(phantom) -> None:
    clean = phantom.data[..., 0]
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in clean.shape], indexing="ij")
    field = 1.0 + 0.3 * grid[0] + 0.2 * grid[1]
    head = phantom.tissue > 0
    estimate = n4_field(clean * field, head, (2.5, 2.5, 2.5), shrink=2)
    corrected = apply_field(clean * field, estimate)
    wm = phantom.tissue == 1
    assert corrected[wm].std() / corrected[wm].mean() < 0.6 * (clean * field)[wm].std() / (clean * field)[wm].mean()


def test_brain_mask_matches_the_phantom_and_has_no_holes(phantom) -> None:
    mean_b0 = phantom.data[..., phantom.bvals < 50].mean(axis=3)
    mask = brain_mask(mean_b0)
    truth = phantom.tissue > 0
    dice = 2 * (mask.astype(bool) & truth).sum() / (mask.sum() + truth.sum())
    assert mask.dtype == np.uint8 and dice > 0.9
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask.astype(bool))


def test_tensor_fit_on_noise_free_signal_is_exact() -> None:
    bvals, bvecs = gradient_scheme(2, {1000.0: 20}, seed=3)
    clean = simulate((20, 22, 10), 2.5, bvals, bvecs, snr=None, bias=0.0, seed=1)
    maps = fit_tensor(clean.data, bvals, bvecs, clean.tissue > 0)
    inside = clean.tissue > 0
    assert np.abs(maps.fa - clean.fa)[inside].max() < 1e-3
    assert np.abs(maps.md - clean.md)[inside].max() < 1e-3 * clean.md[inside].max()
    assert maps.nan_voxels == 0 and maps.degenerate_voxels == 0
    assert (maps.fa[~inside] == 0).all()


def test_tensor_fit_counts_non_finite_voxels() -> None:
    bvals, bvecs = gradient_scheme(2, {1000.0: 12}, seed=3)
    data = simulate((12, 12, 8), 2.5, bvals, bvecs, snr=None, bias=0.0, seed=1).data
    data[3, 3, 3, :] = np.nan
    maps = fit_tensor(data, bvals, bvecs, np.ones(data.shape[:3], bool))
    assert maps.nan_voxels >= 1
    assert np.isfinite(maps.fa).all() and np.isfinite(maps.md).all()
    assert 0.0 <= maps.fa.min() and maps.fa.max() <= 1.0


def test_rotated_volume_gets_its_gradient_rotated_back() -> None:
    """A subject rotated by Q during one volume: the registration finds Q and the
    direction handed to the tensor fit is Q^T g, the gradient in the subject's frame."""
    angle = np.deg2rad(8.0)
    # about the first axis: the phantom's y-z outline is elongated, so the angle is observable
    q = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    bvals, bvecs = gradient_scheme(2, {1000.0: 10}, seed=1)
    in_subject = bvecs.copy()
    in_subject[5] = q.T @ bvecs[5]  # what the subject's tissue saw
    series = simulate((40, 44, 24), 2.5, bvals, in_subject, snr=60, bias=0.0, seed=5)
    centre = (np.array(series.data.shape[:3]) - 1) / 2.0
    inv = q.T
    series.data[..., 5] = ndimage.affine_transform(series.data[..., 5], inv,
                                                   offset=centre - inv @ centre, order=1)
    ref = series.data[..., :2].mean(axis=3)
    out = correct_motion(series.data[..., :7], (2.5, 2.5, 2.5), ref, bvecs[:7], head_mask(ref),
                         flip_x=False, settings=MotionSettings(), threads=2)
    assert out.matrices[5][:3, :3] == pytest.approx(q, abs=0.03)
    assert np.degrees(np.arccos(np.clip(out.bvecs[5] @ in_subject[5], -1, 1))) < 2.0
    assert np.degrees(np.arccos(np.clip(abs(bvecs[5] @ in_subject[5]), -1, 1))) > 4.0
