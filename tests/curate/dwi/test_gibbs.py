"""Gibbs removal: same result as dipy's gibbs_removal, and it removes ringing."""

from __future__ import annotations

import numpy as np
import pytest

from curate.dwi.gibbs import dipy_gibbs, remove_gibbs, slice_axis_from_header
from curate.dwi.phantom import simulate


def _ringing_square(n: int = 48, factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A bright square acquired at ``n`` x ``n`` (k-space truncated: ringing) and the ideal.

    The object is drawn ``factor`` times finer, and only the central ``n`` x ``n``
    of its k-space is kept, as an acquisition at this matrix size would.
    """
    fine_n = n * factor
    fine = np.zeros((fine_n, fine_n))
    lo, hi = fine_n // 4 + 1, 3 * fine_n // 4 + 1  # edges between voxel centres
    fine[lo:hi, lo + fine_n // 12: hi - fine_n // 12] = 100.0
    k = np.fft.fftshift(np.fft.fft2(fine))
    c, h = fine_n // 2, n // 2
    small = np.fft.ifft2(np.fft.ifftshift(k[c - h: c + h, c - h: c + h])) / factor ** 2
    ideal = fine.reshape(n, factor, n, factor).mean(axis=(1, 3))
    return np.abs(small).astype(np.float32), ideal


@pytest.mark.parametrize("axis", [0, 2])
def test_matches_dipy(axis: int) -> None:
    data = simulate((32, 30, 12), 2.0, snr=30, seed=1).data[..., :3]
    ref = dipy_gibbs(data, slice_axis=axis)
    ours = remove_gibbs(data, slice_axis=axis, threads=2)
    diff = np.abs(ours - ref)
    change = np.abs(ref - data).mean()
    assert change > 0.5
    assert np.percentile(diff, 99) < 0.02 * change
    assert diff.mean() < 0.01 * change


def test_removes_ringing_from_a_truncated_square() -> None:
    ringing, ideal = _ringing_square()
    volume = np.repeat(ringing[:, :, None], 3, axis=2)
    out = remove_gibbs(volume, slice_axis=2)[:, :, 1]
    # overshoot above the plateau and error against the ideal edge both shrink
    assert out.max() < ringing.max()
    assert np.abs(out - ideal).mean() < 0.9 * np.abs(ringing - ideal).mean()


def test_mask_limits_the_work_to_lines_that_cross_it() -> None:
    ringing, _ = _ringing_square()
    volume = np.repeat(ringing[:, :, None], 4, axis=2)
    mask = np.zeros(volume.shape, bool)
    mask[8:40, 8:40, :2] = True  # the square and its edges, in slices 0 and 1 only
    out = remove_gibbs(volume, slice_axis=2, mask=mask)
    full = remove_gibbs(volume, slice_axis=2)
    assert np.abs(out[:, :, 2:] - volume[:, :, 2:]).max() < 1e-3  # slices without mask: as read
    inside = mask[:, :, :2]
    assert np.abs(out[:, :, :2][inside] - full[:, :, :2][inside]).max() < 1.0  # < 1 % of 100


def test_slice_axis_comes_from_header_then_spacing() -> None:
    assert slice_axis_from_header(1, (2.0, 2.0, 2.0)) == 1
    assert slice_axis_from_header(None, (2.0, 2.0, 4.0)) == 2
    assert slice_axis_from_header(None, (5.0, 1.0, 1.0)) == 0
    assert slice_axis_from_header(None, (2.0, 2.0, 2.0, 3.0)) == 2
