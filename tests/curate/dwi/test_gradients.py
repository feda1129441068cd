"""Gradient-table checks: every bad table is rejected with a reason, good ones pass."""

from __future__ import annotations

import numpy as np
import pytest

from curate.dwi.gradients import check_gradients, cluster_shells, dti_volumes, parse_table


def _table(n_b0: int = 2, n_dir: int = 12, b: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(n_dir, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.r_[np.zeros(n_b0), np.full(n_dir, b)], np.r_[np.zeros((n_b0, 3)), dirs]


def test_good_table_passes_and_accepts_both_orientations() -> None:
    bvals, bvecs = _table()
    for vecs in (bvecs, bvecs.T):
        check = check_gradients(bvals, vecs, 14)
        assert check.ok, check.reason
        assert check.shells == (0.0, 1000.0)
        assert check.b0_mask.sum() == 2


def test_count_mismatch_is_rejected() -> None:
    bvals, bvecs = _table()
    check = check_gradients(bvals, bvecs, 15)
    assert not check.ok and "15 volumes" in check.reason


def test_all_zero_bvecs_are_rejected() -> None:
    bvals, _ = _table()
    check = check_gradients(bvals, np.zeros((14, 3)), 14)
    assert not check.ok and "zero vectors" in check.reason


def test_missing_b0_is_rejected() -> None:
    _, bvecs = _table()
    check = check_gradients(np.full(14, 1000.0), bvecs, 14)
    assert not check.ok and "no b0" in check.reason


def test_small_b_counts_as_b0() -> None:
    bvals, bvecs = _table()
    bvals[0] = 5.0
    assert check_gradients(bvals, bvecs, 14).ok


def test_near_unit_vectors_are_normalised_far_ones_rejected() -> None:
    bvals, bvecs = _table()
    bvecs[5] *= 1.05
    check = check_gradients(bvals, bvecs, 14, norm_tolerance=0.1)
    assert check.ok
    assert np.allclose(np.linalg.norm(check.bvecs[~check.b0_mask], axis=1), 1.0)
    bvecs[5] *= 2.0
    check = check_gradients(bvals, bvecs, 14, norm_tolerance=0.1)
    assert not check.ok and "not unit vectors" in check.reason


def test_non_finite_values_are_rejected_except_unused_b0_directions() -> None:
    bvals, bvecs = _table()
    bad_vals = bvals.copy()
    bad_vals[3] = np.nan
    assert "non-finite b-values" in check_gradients(bad_vals, bvecs, 14).reason
    bad_vecs = bvecs.copy()
    bad_vecs[4] = np.nan
    assert "not finite" in check_gradients(bvals, bad_vecs, 14).reason
    b0_nan = bvecs.copy()
    b0_nan[0] = np.nan  # what dipy's small_64D ships
    check = check_gradients(bvals, b0_nan, 14)
    assert check.ok and check.notes and np.all(check.bvecs[0] == 0)


def test_too_few_directions_are_rejected() -> None:
    bvals, bvecs = _table(n_dir=4)
    check = check_gradients(bvals, bvecs, 6)
    assert not check.ok and "diffusion-weighted volumes" in check.reason


def test_shells_cluster_within_tolerance() -> None:
    shells, index = cluster_shells(np.array([0, 990, 1000, 1020, 1990, 2005, 3000]), 50, 100)
    assert shells == (0.0, 1003.0, 1998.0, 3000.0)
    assert index.tolist() == [0, 1, 1, 1, 2, 2, 3]


def test_dti_uses_b0_and_low_shells_only() -> None:
    b1, v1 = _table(2, 8, 1000.0)
    b2, v2 = _table(0, 8, 2000.0)
    check = check_gradients(np.r_[b1, b2], np.r_[v1, v2], 18)
    use = dti_volumes(check, 1000.0, 100.0)
    assert use.sum() == 10 and not use[10:].any()


def test_parse_table_reads_rows_and_rejects_ragged() -> None:
    assert parse_table("0 1000 1000\n").shape == (1, 3)
    assert parse_table("1 0 0\n0 1 0\n0 0 1\n").shape == (3, 3)
    with pytest.raises(ValueError):
        parse_table("1 0\n0 1 0\n")
    with pytest.raises(ValueError):
        parse_table("\n")


def test_comma_separated_tables_read_like_fsl_ones() -> None:
    fsl = parse_table("1 0 0.5\n0 1 -0.5\n0 0 0.7\n")
    assert np.array_equal(parse_table("1,0,0.5\n0, 1, -0.5,\n0,0,0.7\n\n"), fsl)
    with pytest.raises(ValueError):
        parse_table(",,\n")


def test_subset_renumbers_shells() -> None:
    from curate.dwi.gradients import subset

    b1, v1 = _table(2, 8, 1000.0)
    b2, v2 = _table(0, 8, 2000.0)
    check = check_gradients(np.r_[b1, b2], np.r_[v1, v2], 18)
    kept = subset(check, dti_volumes(check, 1000.0, 100.0))
    assert kept.shells == (0.0, 1000.0) and kept.bvals.size == 10
    assert kept.shell_index.max() == 1 and kept.b0_mask.sum() == 2
