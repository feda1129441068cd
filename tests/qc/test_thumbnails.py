"""QC thumbnail mosaics: geometry, orientation, overlays, bad input."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from qc.thumbnails import ANATOMY_RGB, ThumbnailStyle, mosaic_png, mosaic_rgb, window, window_limits


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _ramp(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1.0


def test_panel_widths_follow_the_physical_extent_of_each_slice() -> None:
    style = ThumbnailStyle(panel_px=100)
    # x 30 mm, y 60 mm, z 30 mm: sagittal (y by z) 2:1, coronal (x by z) 1:1, axial (x by y) 1:2.
    rgb = mosaic_rgb(_ramp((30, 60, 30)), np.eye(4), (1.0, 1.0, 1.0), style=style)
    assert rgb.shape == (100, 200 + 100 + 50 + 2 * 2, 3)


def test_anisotropic_voxels_are_shown_with_square_display_pixels() -> None:
    style = ThumbnailStyle(panel_px=90)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    rgb = mosaic_rgb(_ramp((30, 30, 10)), affine, (1.0, 1.0, 3.0), style=style)
    # z spans 30 mm like x and y, so every panel is square.
    assert rgb.shape == (90, 3 * 90 + 2 * 2, 3)


def test_voxel_order_does_not_change_the_picture(mni_t1: nib.Nifti1Image) -> None:
    data = np.asarray(mni_t1.dataobj)
    flipped_affine = mni_t1.affine.copy()
    flipped_affine[:3, 0] *= -1
    flipped_affine[:3, 3] += mni_t1.affine[:3, 0] * (data.shape[0] - 1)
    permuted_affine = mni_t1.affine[:, [2, 0, 1, 3]]
    as_is = mosaic_png(data, mni_t1.affine, panel_px=64)
    assert mosaic_png(data[::-1], flipped_affine, panel_px=64) == as_is
    assert mosaic_png(np.transpose(data, (2, 0, 1)), permuted_affine, panel_px=64) == as_is


def test_sagittal_panel_has_superior_at_the_top() -> None:
    volume = np.zeros((20, 20, 20), dtype=np.float32)
    volume[:, :, 15:] = 100.0  # bright top (superior) slab
    volume[:, :, :15] = 10.0
    rgb = mosaic_rgb(volume, np.eye(4), style=ThumbnailStyle(panel_px=40))
    sagittal = rgb[:, :40, 0].astype(float)
    assert sagittal[:5].mean() > sagittal[-5:].mean() + 100


def test_overlays_tint_anon_voxels_red_and_outline_anatomy_green(mni_t1: nib.Nifti1Image,
                                                                 mni_brain_mask: nib.Nifti1Image) -> None:
    data = np.asarray(mni_t1.dataobj)
    brain = np.asarray(mni_brain_mask.dataobj)
    anon = np.zeros_like(brain)
    anon[:, :, : data.shape[2] // 4] = 1  # the bottom quarter "removed by defacing"
    plain = _decode(mosaic_png(data, mni_t1.affine, panel_px=80))
    drawn = _decode(mosaic_png(data, mni_t1.affine, anon_mask=anon, anatomy_mask=brain, panel_px=80))
    assert np.array_equal(plain[..., 0], plain[..., 1])  # grey without masks
    green = np.all(drawn == ANATOMY_RGB, axis=-1)
    assert 50 < green.sum() < 0.2 * green.size  # an outline, not a fill
    reddish = drawn[..., 0].astype(int) - drawn[..., 1].astype(int) > 40
    sagittal_rows = np.nonzero(reddish[:, :80].any(axis=1))[0]
    assert sagittal_rows.size and sagittal_rows.min() > 80 * 0.6  # only near the bottom


def test_mask_on_another_grid_is_rejected() -> None:
    with pytest.raises(ValueError, match="anon mask shape"):
        mosaic_rgb(_ramp((10, 10, 10)), np.eye(4), anon_mask=np.ones((9, 10, 10)))


def test_broken_affine_shows_voxel_order() -> None:
    volume = _ramp((10, 12, 8))
    as_voxels = mosaic_rgb(volume, np.eye(4), (1.0, 1.0, 1.0))
    assert np.array_equal(mosaic_rgb(volume, np.zeros((4, 4)), (1.0, 1.0, 1.0)), as_voxels)
    nan_affine = np.eye(4)
    nan_affine[0, 0] = np.nan
    assert np.array_equal(mosaic_rgb(volume, nan_affine, (np.nan, 1.0, 0.0)), as_voxels)


def test_empty_axis_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot draw an image of shape"):
        mosaic_rgb(np.zeros((0, 10, 10)), np.eye(4))


def test_series_shows_its_first_volume_and_2d_images_work() -> None:
    series = np.stack([_ramp((12, 12, 12)), np.zeros((12, 12, 12), np.float32)], axis=-1)
    assert mosaic_png(series, np.eye(4), panel_px=24) == mosaic_png(series[..., 0], np.eye(4), panel_px=24)
    assert mosaic_rgb(_ramp((16, 16)), np.eye(4), style=ThumbnailStyle(panel_px=24)).shape[0] == 24


def test_blank_and_nonfinite_volumes_render_black_without_error() -> None:
    assert mosaic_rgb(np.zeros((8, 8, 8)), np.eye(4)).max() == 0
    nan = np.full((8, 8, 8), np.nan, dtype=np.float32)
    nan[4, 4, 4] = 1.0
    assert np.isfinite(mosaic_rgb(nan, np.eye(4)).astype(float)).all()


def test_window_uses_percentiles_of_the_foreground_only() -> None:
    volume = np.concatenate([np.zeros(1000), np.linspace(10, 20, 101)])
    low, high = window_limits(volume, 0.0, 100.0)
    assert (low, high) == (10.0, 20.0)
    assert window(np.array([5.0, 15.0, 25.0]), (low, high)).tolist() == [0.0, 0.5, 1.0]


def test_one_slice_slab_is_not_stretched_over_the_side_panels(mni_t1) -> None:
    data = np.asarray(mni_t1.dataobj, np.float32)[:, :, 90:91]  # one axial slice of the real T1
    rgb = mosaic_rgb(data, mni_t1.affine, style=ThumbnailStyle(panel_px=80))
    assert rgb.shape[0] == 80

    def lit_rows(panel: np.ndarray) -> int:
        return int(np.count_nonzero(panel.max(axis=(1, 2)) > 0))

    # The sagittal view of a 1 mm slab is a ~1 px high line and the axial view a full
    # panel; before, the side views repeated their one row over all 80.
    assert lit_rows(rgb[:, :4 * 80]) <= 3 and lit_rows(rgb[:, -60:]) > 40
