"""The torch spatial augmentation: analytic checks on a real image region (MNI152)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pretrain.augment import (
    AugmentConfig, crop_and_flip, region_masks, resample, rotation_matrix, sample_grid, sample_params, source_window,
)

P = 24
CFG = AugmentConfig()


@pytest.fixture(scope="module")
def volume(mni_t1) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(mni_t1.dataobj, np.float32)[60:120, 70:130, 50:110])


def _run(volume: np.ndarray, centre: np.ndarray, matrix: np.ndarray, device: str = "cpu"):
    lo, hi = source_window(centre, matrix, P, volume.shape)
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    packed = (volume > volume.mean()).astype(np.uint8)  # bit 0: "anatomy"
    grid = sample_grid(centre, matrix, P, lo, volume[window].shape, device)
    return resample(torch.from_numpy(volume[window]).to(device), region_masks(packed[window]).to(device), grid)


def test_identity_transform_equals_plain_crop(volume):
    centre = np.array([30.5, 25.5, 33.5])  # (P - 1) / 2 = 11.5, so the crop starts at integers
    out = _run(volume, centre, np.eye(3))
    start = (centre - 11.5).astype(int)
    expect = volume[tuple(slice(s, s + P) for s in start)]
    assert torch.allclose(out["image"][0], torch.from_numpy(expect), atol=1e-4)
    assert bool(out["valid"].all())
    assert torch.equal(out["anatomy_mask"][0], torch.from_numpy((expect > volume.mean()).astype(np.uint8)))


def test_quarter_turn_matches_rot90(volume):
    centre = np.array([30.5, 30.5, 30.5])
    out = _run(volume, centre, rotation_matrix((0.0, 0.0, math.pi / 2)))
    crop = volume[19:43, 19:43, 19:43]
    # output (a, b) samples centre + (-(b - h), a - h): out[a, b] = crop[P - 1 - b, a], numpy's rot90 k=-1
    expect = np.rot90(crop, k=-1, axes=(0, 1))
    assert np.allclose(out["image"][0].numpy(), expect, atol=1e-3)
    assert set(out["anatomy_mask"].unique().tolist()) == {0, 1}


def test_scale_two_samples_every_other_voxel(volume):
    centre = np.array([30.0, 30.0, 30.0])
    out = _run(volume, centre, 2.0 * np.eye(3))
    # offsets -11.5..11.5 scaled by 2 -> 30 - 23 = 7, 9, ..., 53
    expect = volume[7:54:2, 7:54:2, 7:54:2]
    assert np.allclose(out["image"][0].numpy(), expect, atol=1e-3)


def test_points_outside_the_array_are_invalid_and_zero(volume):
    centre = np.array([2.0, 30.0, 30.0])
    matrix = rotation_matrix((0.3, 0.0, 0.0))
    out = _run(volume, centre, matrix)
    valid = out["valid"][0]
    assert 0 < int(valid.sum()) < P**3
    assert float(out["image"][0][~valid].abs().sum()) == 0.0
    # valid is exactly "the nearest voxel of the sampled point lies inside the array"
    points = centre[:, None] + matrix @ (np.indices((P, P, P)).reshape(3, -1) - (P - 1) / 2)
    inside = ((points >= -0.5) & (points < np.array(volume.shape)[:, None] - 0.5)).all(axis=0)
    assert (valid.numpy().ravel() != inside).mean() < 1e-3  # ties at exactly .5 may round either way


def test_crop_and_flip_pads_and_mirrors():
    region = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    out, valid = crop_and_flip(region, lo=np.array([0, 0, 0]), start=np.array([-1, 0, 0]), patch=4,
                               flips=np.array([-1.0, 1.0, 1.0]))
    assert out.shape == (1, 4, 4, 4) and int(valid.sum()) == 2 * 3 * 4
    # along axis 0 the patch holds [pad, r0, r1, pad]; mirrored -> [pad, r1, r0, pad]
    assert np.array_equal(out[0, 1, :3, :4], region[0, 1]) and np.array_equal(out[0, 2, :3, :4], region[0, 0])
    assert not valid[0].any() and not valid[3].any()


def test_crop_and_flip_of_a_full_region_keeps_dtype_and_matches_the_padded_path():
    rng = np.random.default_rng(0)
    region = rng.normal(size=(1, 4, 4, 4)).astype(np.float16)
    flips = np.array([-1.0, 1.0, -1.0])
    out, valid = crop_and_flip(region, lo=np.array([2, 3, 4]), start=np.array([2, 3, 4]), patch=4, flips=flips)
    assert out.dtype == np.float16 and valid.all() and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, np.flip(region, axis=(1, 3)))
    # the same voxels placed through the general (padding) path give the same patch
    padded, _ = crop_and_flip(region[:, :3], lo=np.array([2, 3, 4]), start=np.array([2, 3, 4]), patch=4,
                              flips=flips)
    assert np.array_equal(padded[:, 1:], out[:, 1:])


def test_parameters_follow_nnssl_probabilities_and_ranges():
    rng = np.random.default_rng(0)
    draws = [sample_params(rng, CFG) for _ in range(4000)]
    fraction = np.mean([d.interpolate for d in draws])
    assert fraction == pytest.approx(1 - 0.8 * 0.8, abs=0.03)
    scales = [abs(np.linalg.det(d.matrix)) ** (1 / 3) for d in draws]
    assert 0.7 - 1e-9 <= min(scales) and max(scales) <= 1.4 + 1e-9
    flipped = np.mean([np.sign(np.linalg.det(d.matrix)) < 0 for d in draws])
    assert fraction > 0 and flipped == pytest.approx(0.5, abs=0.03)  # odd number of mirrored axes
    plain = [d for d in draws if not d.interpolate]
    assert all(set(np.abs(np.diag(d.matrix))) == {1.0} for d in plain)


def test_no_augmentation_is_identity():
    params = sample_params(np.random.default_rng(0), CFG, augment=False)
    assert not params.interpolate and np.array_equal(params.matrix, np.eye(3))


@pytest.mark.gpu
def test_gpu_matches_cpu(volume):
    centre = np.array([30.0, 31.0, 29.0])
    matrix = rotation_matrix((0.2, -0.3, 0.4)) * 1.2
    cpu = _run(volume, centre, matrix)
    gpu = _run(volume, centre, matrix, device="cuda")
    assert torch.allclose(cpu["image"], gpu["image"].cpu(), atol=1e-3)
