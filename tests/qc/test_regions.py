"""Tissue-class thresholds (qc.regions) on real intensities with extreme voxels."""

from __future__ import annotations

import numpy as np
import pytest

from qc.regions import tissue_thresholds


@pytest.fixture(scope="module")
def head_values(head_template) -> np.ndarray:
    """Intensities inside pydeface's mean head (a real T1 with skull and face)."""
    data = np.asarray(head_template.dataobj, np.float32)
    return data[data > 0.1 * float(data.max())]


@pytest.mark.parametrize("outlier", [1e9, 3e38])
def test_one_extreme_voxel_does_not_move_the_tissue_classes(head_values, outlier: float) -> None:
    clean = tissue_thresholds(head_values)
    # One hot voxel used to push every other voxel into one of 256 histogram bins:
    # scikit-image raised (a build lost the image) or the classes split the outlier off.
    low, high = tissue_thresholds(np.insert(head_values, 0, np.float32(outlier)))  # first: always sampled
    assert low == pytest.approx(clean[0], rel=0.05) and high == pytest.approx(clean[1], rel=0.05)


def test_two_level_histogram_gives_no_classes(head_values) -> None:
    values = np.concatenate([np.zeros(1000), [1e-6], np.full(1000, 1e6)])  # 3 values, 2 bins
    assert all(np.isnan(tissue_thresholds(values)))
    assert np.isfinite(tissue_thresholds(head_values)).all()
