"""A single series that dcm2niix splits apart is stacked by SimpleITK instead (issue 16, item 8).

Some research tools and anonymizers write a different StudyTime and
AcquisitionTime on every slice; dcm2niix then writes one image per slice. The
series here is cut from the real MNI152 T1 (nilearn) with pydicom's
MR_small.dcm headers (:mod:`tests.curate.dicom_factory`), its files named in
no slice order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from curate import pipeline
from curate.config import CurateConfig
from manifests.schema import ImageRecord, SourceKind
from tests.curate.dicom_factory import AXIAL, SLICES, Mni, write_series
from tests.curate.test_dicom_exports import _match


def _times(ds: pydicom.Dataset, i: int) -> None:
    ds.StudyTime = ds.SeriesTime = f"{10 + i // 60:02d}{i % 60:02d}00"
    ds.AcquisitionTime = ds.ContentTime = f"11{i:02d}{i:02d}"


def _names(i: int) -> str:
    return f"IM{(i * 7919) % 997:04d}"  # file order is not slice order


@pytest.fixture(scope="module")
def mni(mni_t1: nib.Nifti1Image) -> Mni:
    return Mni(mni_t1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mni: Mni, pydicom_mr: Path) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("split")
    planes = mni.planes(*AXIAL)
    write_series(root / "src" / "times", planes, AXIAL, pydicom_mr, "T1 MPRAGE", names=_names, edit=_times)
    write_series(root / "src" / "plain", planes, AXIAL, pydicom_mr, "T1 MPRAGE", names=_names)
    config = CurateConfig()
    config = dataclasses.replace(config, triage=dataclasses.replace(config.triage, min_file_size_bytes=1000))
    result = pipeline.build(root / "src", root / "out", config,
                            pipeline.RunOptions(workers=1, source_kind=SourceKind.DICOM))
    rows: dict[str, ImageRecord] = {r.source_path: r for r in result.records if r.derived_from is None}
    return rows, root / "out"


def test_series_split_by_slice_times_is_one_included_image_with_a_warning(built) -> None:
    rows, _ = built
    row = rows["times"]
    assert row.included, (row.exclusion_reasons, row.exclusion_detail)
    assert row.shape == (72, 72, SLICES)
    note = next(w for w in row.warnings if "SimpleITK" in w)
    assert f"dcm2niix split this series into {SLICES} images" in note
    assert not any("SimpleITK" in w for w in rows["plain"].warnings)  # dcm2niix converts the plain one


def test_stacked_series_lies_where_the_headers_say(built, mni) -> None:
    rows, out = built
    stacked = nib.load(out / rows["times"].converted_path)
    assert _match(stacked, mni) > 0.99
    # the same voxels, on the same world grid, as dcm2niix's conversion of the unsplit series
    a = nib.as_closest_canonical(stacked)
    b = nib.as_closest_canonical(nib.load(out / rows["plain"].converted_path))
    assert a.shape == b.shape
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_stacked_series_goes_through_every_stage(built) -> None:
    rows, _ = built
    row = rows["times"]
    assert row.iqs is not None and row.anatomy_mask_path and row.array_path
