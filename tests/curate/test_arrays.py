"""Pure maths of the pre-training arrays, on real images (nilearn MNI152, pydeface head)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from curate.arrays import (
    bounding_box, pack_masks, prepare, resample_mask, resampled_shape, to_ras, unpack_masks, zscore,
)


def _lps_aniso(img: nib.Nifti1Image, window: tuple[slice, ...], zooms: tuple[float, float, float]):
    """A real sub-volume stored L-P-S with anisotropic voxels (same data, new header)."""
    data = np.asarray(img.dataobj, dtype=np.float32)[window][::-1, ::-1, :].copy()
    affine = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
    affine[:3, 3] = (40.0, 30.0, -20.0)
    return data, affine


def _source_values(data: np.ndarray, src_affine: np.ndarray, arr_affine: np.ndarray,
                   voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source voxel coordinates of array ``voxels`` and the source values there."""
    homog = np.c_[voxels, np.ones(len(voxels))].T
    src = (np.linalg.inv(src_affine) @ arr_affine @ homog)[:3].T
    return src, data[tuple(np.rint(src).astype(int).T)]


def test_array_voxels_map_back_to_their_source_voxels(mni_t1):
    data, affine = _lps_aniso(mni_t1, (slice(60, 130), slice(80, 150), slice(60, 100)), (1.0, 1.0, 2.0))
    out = prepare(data, affine, None, None, margin_mm=0.0)
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert out.spacing_mm == (1.0, 1.0, 1.0)
    # every second array voxel along the 2 mm axis lands exactly on a source voxel centre
    rng = np.random.default_rng(0)
    voxels = np.c_[rng.integers(0, out.image.shape[0], 400), rng.integers(0, out.image.shape[1], 400),
                   2 * rng.integers(0, out.image.shape[2] // 2, 400)]
    src, values = _source_values(data, affine, out.affine, voxels)
    assert np.allclose(src, np.rint(src), atol=1e-6)
    kept = out.image[tuple(voxels.T)]
    # the array is a z-scored copy: an exact linear function of the source at sample nodes
    slope, intercept = np.polyfit(values, kept, 1)
    assert slope > 0
    assert np.abs(kept - (slope * values + intercept)).max() < 1e-3 * np.abs(kept).max() + 1e-4
    # the crop box (source voxel indices) holds every source voxel the array maps to
    lo, hi = np.array(out.crop_box[:3]), np.array(out.crop_box[3:])
    assert ((np.rint(src) >= lo) & (np.rint(src) < hi)).all()


def test_crop_follows_anatomy_mask_with_margin(mni_t1, mni_brain_mask):
    data = np.asarray(mni_t1.dataobj, np.float32)
    brain = np.asarray(mni_brain_mask.dataobj, np.uint8)
    out = prepare(data, mni_t1.affine, brain, None, margin_mm=5.0)
    lo, hi = bounding_box(brain, (0, 0, 0))
    expect_lo = [max(0, v - 5) for v in lo]  # the brain touches the bottom of the MNI grid
    expect_hi = [min(n, v + 5) for v, n in zip(hi, brain.shape)]
    assert out.crop_box == (*expect_lo, *expect_hi)
    anatomy, anon = unpack_masks(out.masks)
    assert anatomy.sum() == brain.sum()  # 1 mm source: nothing resampled, nothing lost
    assert anon.sum() == 0
    assert out.image.shape == tuple(h - l for l, h in zip(expect_lo, expect_hi))


@pytest.mark.parametrize("normalization", ["image", "anatomy"])
def test_zscore_statistics(mni_t1, mni_brain_mask, normalization):
    data = np.asarray(mni_t1.dataobj, np.float32)
    brain = np.asarray(mni_brain_mask.dataobj, np.uint8)
    out = prepare(data, mni_t1.affine, brain, None, normalization=normalization)
    anatomy, _ = unpack_masks(out.masks)
    region = out.image if normalization == "image" else out.image[anatomy > 0]
    assert abs(float(region.mean())) < 1e-4
    assert abs(float(region.std()) - 1.0) < 1e-4


def test_zscore_ignores_non_finite_voxels():
    data = np.array([np.nan, 1.0, 3.0, np.inf])
    out = zscore(data)
    assert np.isfinite(out).all()
    assert out[1] == pytest.approx(-1.0) and out[2] == pytest.approx(1.0)


def test_masks_stay_binary_after_resampling(head_template, face_mask):
    window = (slice(20, 150), slice(0, 90), slice(40, 160))  # the face region of the head
    data = np.asarray(head_template.dataobj, np.float32)[window]
    anon = (np.asarray(face_mask.dataobj)[window] < 0.5).astype(np.uint8)  # pydeface: 0 = face removed
    zooms = head_template.header.get_zooms()[:3]
    out = prepare(data, head_template.affine, None, anon, interpolation="linear", margin_mm=0.0)
    anatomy, anon_out = unpack_masks(out.masks)
    assert set(np.unique(anatomy)) <= {0, 1} and set(np.unique(anon_out)) <= {0, 1}
    assert set(np.unique(out.masks)) <= {0, 1, 2, 3}
    # nearest-neighbour resampling keeps the face volume (in mm^3) within 2 %
    assert anon_out.sum() == pytest.approx(anon.sum() * float(np.prod(zooms)), rel=0.02)


def test_resample_mask_grid_matches_resampled_shape():
    mask = np.zeros((10, 7, 5), np.uint8)
    mask[9, 6, 4] = 1
    out = resample_mask(mask, (1.0, 2.0, 3.0), (1.0, 1.0, 1.0))
    assert out.shape == resampled_shape(mask.shape, (1.0, 2.0, 3.0), (1.0, 1.0, 1.0)) == (10, 13, 13)
    # output voxels 11, 12 sample source 5.5 -> 6 and 6 along axis 1, 3.7 -> 4 and 4 along axis 2
    assert out[9, 12, 12] == 1 and out[9, 11, 11] == 1 and out.sum() == 4


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(1)
    anatomy, anon = rng.integers(0, 2, (2, 6, 6, 6), dtype=np.uint8)
    back = unpack_masks(pack_masks(anatomy, anon))
    assert np.array_equal(back[0], anatomy) and np.array_equal(back[1], anon)


def test_to_ras_is_a_pure_permutation():
    data = np.arange(24.0).reshape(2, 3, 4)
    affine = np.array([[0, 0, -2.0, 0], [1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    out, ras_affine, to_source = to_ras(data, affine)
    assert out.shape == (4, 2, 3)
    assert nib.aff2axcodes(ras_affine) == ("R", "A", "S")
    for voxel in [(0, 0, 0), (3, 1, 2), (1, 0, 2)]:
        src = (to_source @ [*voxel, 1])[:3].astype(int)
        assert out[voxel] == data[tuple(src)]
        assert np.allclose(ras_affine @ [*voxel, 1], affine @ [*src, 1])


def test_empty_anatomy_keeps_whole_image_with_note(mni_t1):
    data = np.asarray(mni_t1.dataobj, np.float32)[:40, :40, :40]
    out = prepare(data, mni_t1.affine, np.zeros(data.shape, np.uint8), None)
    assert out.image.shape == data.shape
    assert out.notes and "empty anatomy" in out.notes[0]
