"""Anatomy (foreground) masks: analytic phantoms and real heads under noise and bias."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from curate.masks.anatomy import anatomy_mask, block_factors, downsample, upsample

from .conftest import bias_field, rician


def test_cube_in_noise_is_recovered_exactly() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((48, 48, 48)).astype(np.float32) * 5
    image[8:40, 12:36, 16:32] += 200.0
    mask = anatomy_mask(image, (1.0, 1.0, 1.0))
    truth = np.zeros(image.shape, dtype=np.uint8)
    truth[8:40, 12:36, 16:32] = 1
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, truth)


def test_hollow_shell_is_filled_and_nan_is_air() -> None:
    z, y, x = np.mgrid[-30:30, -30:30, -30:30]
    radius = np.sqrt(x**2 + y**2 + z**2)
    noise = np.random.default_rng(3).random(radius.shape) * 4
    image = (np.where((radius < 25) & (radius > 20), 100.0, 1.0) + noise).astype(np.float32)
    image[0, 0, :5] = np.nan
    mask = anatomy_mask(image, (1.0, 1.0, 1.0))
    assert mask[30, 30, 30] == 1  # the dark inside of a closed shell is anatomy
    assert mask[0, 0, 0] == 0 and mask[2, 2, 2] == 0
    assert set(np.unique(mask).tolist()) == {0, 1}


@pytest.mark.parametrize("image", [np.zeros((16, 16, 16)), np.full((16, 16, 16), 7.0)])
def test_images_without_contrast_have_no_anatomy(image: np.ndarray) -> None:
    assert anatomy_mask(image.astype(np.float32), (1.0, 1.0, 1.0)).sum() == 0


def test_non_3d_input_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="3-D"):
        anatomy_mask(np.zeros((4, 4, 4, 2), np.float32), (1.0, 1.0, 1.0))


def test_block_round_trip_keeps_shape() -> None:
    mask = np.zeros((7, 9, 5), dtype=bool)
    mask[2:5, 3:8, 1:4] = True
    factors = block_factors((0.5, 1.0, 2.0), 2.0)
    assert factors == (4, 2, 1)
    coarse = downsample(mask, factors) >= 0.5
    assert upsample(coarse, factors, mask.shape).shape == mask.shape


@pytest.mark.parametrize("variant", ["clean", "noise", "bias", "bias_noise"])
def test_head_mask_is_robust_to_noise_and_bias(head_parts, head_template, variant: str) -> None:
    data, head, brain = head_parts["data"], head_parts["head"], head_parts["brain"]
    image = data * bias_field(data.shape) if "bias" in variant else data
    if "noise" in variant:
        image = rician(image, 15.0, seed=2)
    mask = anatomy_mask(image, head_template.header.get_zooms()).astype(bool)
    assert (mask & brain).sum() / brain.sum() >= 0.995
    dice = 2 * (mask & head).sum() / (mask.sum() + head.sum())
    assert dice >= 0.95
    # air beyond 2 mm of the truth outline (the mask is computed on a 2 mm grid)
    far_air = ~ndimage.binary_dilation(head, iterations=2)
    assert (mask & far_air).sum() / far_air.sum() <= 0.02


def test_brain_only_image_mask_covers_the_brain(mni_t1, mni_brain_mask) -> None:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)
    brain = np.asarray(mni_brain_mask.dataobj) > 0
    mask = anatomy_mask(data, mni_t1.header.get_zooms()).astype(bool)
    assert (mask & brain).sum() / brain.sum() >= 0.97
    assert (mask & ~brain).sum() / brain.sum() <= 0.1


def test_float_max_voxel_does_not_overflow_the_threshold(head_template) -> None:
    data = np.asarray(head_template.dataobj, np.float32)[::2, ::2, ::2].copy()
    zooms = tuple(2 * float(z) for z in head_template.header.get_zooms())
    clean = anatomy_mask(data, zooms)
    data[0, 0, 0] = np.finfo(np.float32).max  # a fill value some writers use for "missing"
    mask = anatomy_mask(data, zooms)  # the log-Otsu histogram used to overflow to inf and raise
    assert mask.shape == clean.shape and mask.any()
