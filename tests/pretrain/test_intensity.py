"""AMAES's input-only intensity augmentations: analytic cases and properties on a real image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pretrain.intensity import (
    AMAES, IntensityConfig, bias_field, degrade, gamma_transform, gaussian_blur, gaussian_blur_conv, gibbs_ringing,
    motion_ghosting,
    simulate_lowres, unit_range,
)

NAMES = ("additive_noise", "blur", "multiplicative_noise", "ghosting", "ringing", "lowres", "bias_field", "gamma")


@pytest.fixture(scope="module")
def crop(mni_t1) -> torch.Tensor:
    data = np.asarray(mni_t1.dataobj, np.float32)[70:102, 80:112, 60:92]
    return torch.from_numpy((data - data.mean()) / data.std())


def only(name: str, **changes) -> IntensityConfig:
    """A config applying exactly one transform, always."""
    off = {f"p_{n}": 0.0 for n in NAMES}
    return dataclasses.replace(AMAES, **{**off, f"p_{name}": 1.0, **changes})


@pytest.mark.parametrize("name", NAMES)
def test_every_transform_changes_the_input_and_keeps_its_range(crop, name):
    cfg = only(name, lowres_p_per_axis=1.0, blur_sigma=(0.5, 1.0))
    out, applied = degrade(crop, np.random.default_rng(1), cfg)
    assert applied == [name]
    assert out.shape == crop.shape and out.dtype == torch.float32
    assert not torch.equal(out, crop)
    assert crop.min() <= out.min() and out.max() <= crop.max()  # AMAES's clip_to_input_range


def test_degrade_leaves_its_input_untouched(crop):
    before = crop.clone()
    cfg = dataclasses.replace(AMAES, **{f"p_{n}": 1.0 for n in NAMES})
    out, applied = degrade(crop, np.random.default_rng(0), cfg)
    assert applied == list(NAMES) and torch.equal(crop, before) and not torch.equal(out, crop)


def test_probabilities_are_amaes_and_drawn_per_sample(crop):
    small = crop[:8, :8, :8]
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(NAMES, 0)
    n = 400
    for _ in range(n):
        for name in degrade(small, rng, AMAES)[1]:
            counts[name] += 1
    expect = {n_: getattr(AMAES, f"p_{n_}") for n_ in NAMES}
    assert expect == {"additive_noise": 0.2, "blur": 0.1, "multiplicative_noise": 0.2, "ghosting": 0.2,
                      "ringing": 0.2, "lowres": 0.1, "bias_field": 0.33, "gamma": 0.2}
    for name in NAMES:
        assert counts[name] / n == pytest.approx(expect[name], abs=0.06), name


@pytest.mark.parametrize(("name", "a", "b"), [("blur", 3.0, -1.0), ("ringing", 0.5, 2.0), ("lowres", 2.0, 5.0),
                                              ("bias_field", 4.0, 1.0), ("gamma", 0.1, -3.0)])
def test_transforms_follow_an_affine_change_of_intensities(crop, name, a, b):
    """Parameters are relative to the crop's range: z-scored and [0, 1] crops are degraded alike."""
    cfg = only(name, lowres_p_per_axis=1.0)
    x, _ = degrade(crop, np.random.default_rng(5), cfg)
    y, _ = degrade(a * crop + b, np.random.default_rng(5), cfg)
    torch.testing.assert_close(y, a * x + b, atol=1e-4 * a * float(crop.max() - crop.min()), rtol=1e-4)


def test_identity_settings_are_identities(crop):
    assert torch.allclose(motion_ghosting(crop, 1.0, 3, 1), crop, atol=1e-5)
    assert torch.equal(gibbs_ringing(crop, 1.0, 2), crop)
    assert torch.allclose(gamma_transform(crop, 1.0, False), crop, atol=1e-5)
    assert torch.allclose(simulate_lowres(crop, (1.0, 1.0, 1.0)), crop, atol=1e-6)
    assert torch.allclose(bias_field(tuple(crop.shape), np.zeros(20), crop.device), torch.ones_like(crop))
    assert torch.equal(gaussian_blur(crop, 0.0), crop)


def test_analytic_cases(crop):
    # blur keeps a constant; the CPU (scipy) and the GPU (conv3d) paths agree
    const = torch.full((12, 12, 12), 2.5)
    assert torch.allclose(gaussian_blur(const, 1.0), const)
    torch.testing.assert_close(gaussian_blur(crop, 0.7), gaussian_blur_conv(crop, 0.7), atol=1e-5, rtol=1e-5)
    # gamma inversion: the output is the mirror of the range
    inv = gamma_transform(crop, 1.0, True)
    assert torch.allclose(inv, crop.max() + crop.min() - crop, atol=1e-5)
    # Gibbs ringing is a low-pass: a single-voxel-period pattern along the axis is removed
    stripes = torch.zeros(16, 16, 16)
    stripes[::2] = 1.0
    assert torch.allclose(gibbs_ringing(stripes, 0.75, 0), torch.full_like(stripes, 0.5), atol=1e-5)
    # ghosting with every 2nd k-space line x alpha is a ghost at half the field of view:
    # k-space x (-1)^k is a circular shift by n/2, so z -> (1+a)/2 z + (a-1)/2 roll(z, n/2)
    a, z = 0.9, crop - crop.min()
    ghost = ((1 + a) / 2 * z + (a - 1) / 2 * z.roll(16, dims=1)).abs() + crop.min()
    assert torch.allclose(motion_ghosting(crop, a, 2, 1), ghost, atol=1e-4)


def test_unit_range_maps_valid_voxels_to_zero_one(crop):
    valid = torch.ones_like(crop, dtype=torch.bool)
    valid[:4] = False
    u = unit_range(crop[None], valid[None])[0]
    assert float(u[valid].min()) == 0.0 and float(u[valid].max()) == pytest.approx(1.0)
    assert float(u[~valid].abs().sum()) == 0.0
    # an affine change of the z-scored input gives the same [0, 1] crop
    torch.testing.assert_close(unit_range((3 * crop + 7)[None], valid[None])[0], u, atol=1e-5, rtol=1e-5)
