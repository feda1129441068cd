"""Cut-plane detection and RAS handling on analytic phantoms."""

from __future__ import annotations

import numpy as np

from curate.masks.geometry import coarse_grid, contact_points, find_planes, plane_prism


def _ball(n: int = 60, radius: float = 25.0) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n] - n / 2
    return np.sqrt(x**2 + y**2 + z**2) <= radius


def test_a_sphere_has_no_flat_cut_but_a_sliced_sphere_has_one() -> None:
    ball = _ball()
    void = ~ball
    pts, normals = contact_points(ball, void)
    assert find_planes(pts * 1.0, normals, 1.0, 1.5, 400.0, 20.0) == []
    sliced = ball.copy()
    sliced[:, 42:, :] = False  # cut at y = 42 (12 mm from the centre)
    pts, normals = contact_points(sliced, ~sliced)
    planes = find_planes(pts * 1.0, normals, 1.0, 1.5, 400.0, 20.0)
    assert len(planes) == 1
    plane = planes[0]
    np.testing.assert_allclose(np.abs(plane.normal), [0, 1, 0], atol=0.05)
    assert plane.normal[1] > 0  # points away from the head, into the cut
    assert abs(plane.offset - 41.0) < 1.0
    true_area = np.pi * (25.0**2 - 12.0**2)
    assert 0.8 * true_area < plane.area_mm2 < 1.2 * true_area


def test_prism_covers_the_removed_cap_only() -> None:
    ball = _ball()
    sliced = ball.copy()
    sliced[:, 42:, :] = False
    pts, normals = contact_points(sliced, ~sliced)
    plane = find_planes(pts * 1.0, normals, 1.0, 1.5, 400.0, 20.0)[0]
    prism = plane_prism(plane, pts * 1.0, ~sliced, np.ones(3), 20.0, 3.0)
    cap = ball & ~sliced
    assert (prism & cap).sum() / cap.sum() >= 0.95
    assert not (prism & sliced).any()
    assert not prism[:, :40, :].any()


def test_coarse_grid_round_trips_any_storage_order() -> None:
    rng = np.random.default_rng(0)
    data = rng.random((20, 30, 40)).astype(np.float32)
    mask = np.zeros(data.shape, dtype=np.uint8)
    mask[3:9, 5:20, 10:33] = 1
    affine = np.array([[0, 0, -2.0, 10], [2.0, 0, 0, 0], [0, -2.0, 0, 5], [0, 0, 0, 1]])
    grid = coarse_grid(data, affine, mask, 2.0)
    # RAS order: R is stored axis 2, A is axis 0, S is axis 1
    assert grid.anatomy.shape == (40, 20, 30)
    back = grid.to_image(grid.anatomy)
    np.testing.assert_array_equal(back.astype(np.uint8), mask)
