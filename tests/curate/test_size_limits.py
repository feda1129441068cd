"""Size limits in ``[read]``: images and DICOM series are measured from their headers before decoding.

Issue 16, item 4: a 22 MB ``.nii.gz`` holding 1024^3 float32 drove a worker
past 9.7 GB, and a deflated DICOM series inflated to 7.5 GiB of temporary
files.  Here the same bombs are built small, with limits set below them; the
full-size ones are measured in ``benchmarks/bench_bombs.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from curate import dicom_convert, pipeline
from curate.config import CurateConfig
from curate.dicom import read_file_header
from curate.io import TooLarge, UnreadableImage, read_image
from manifests.schema import ImageRecord, SourceKind
from tests.curate.dicom_factory import AXIAL, Mni, write_series

DEFLATED = "1.2.840.10008.1.2.1.99"


def _config(**read: int) -> CurateConfig:
    config = CurateConfig()
    # the deflated test files are small; the small-file rule is not what these tests are about
    return dataclasses.replace(config, read=dataclasses.replace(config.read, **read),
                               triage=dataclasses.replace(config.triage, min_file_size_bytes=1000))


def _build(tree: Path, out: Path, config: CurateConfig, kind: SourceKind) -> list[ImageRecord]:
    result = pipeline.build(tree, out, config, pipeline.RunOptions(workers=1, source_kind=kind))
    return [r for r in result.records if r.derived_from is None]


def _nifti_bomb_header(path: Path, shape: tuple[int, ...]) -> None:
    """A ``.nii.gz`` whose header claims ``shape`` float32 and which holds almost no data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4 + bytes(1024))


def test_nifti_claiming_more_than_the_limit_is_refused_before_its_data_are_read(tmp_path) -> None:
    path = tmp_path / "bomb.nii.gz"
    _nifti_bomb_header(path, (1024, 1024, 1024))
    # without a limit the (truncated) data are read and found short; with one, nothing is read
    with pytest.raises(UnreadableImage) as unlimited:
        read_image(path)
    assert not isinstance(unlimited.value, TooLarge)
    with pytest.raises(TooLarge, match=r"4\.0 GiB .*1024x1024x1024.*max_image_bytes"):
        read_image(path, max_bytes=2 * 1024**3)


def test_real_image_above_max_image_bytes_is_excluded_for_size(tmp_path, mni_t1) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    nib.save(mni_t1, tree / "t1.nii.gz")  # 197 x 233 x 189 float32: 33 MiB decoded
    small = _build(tree, tmp_path / "out_small", _config(max_image_bytes=8 * 1024**2), SourceKind.NIFTI)
    assert small[0].exclusion_reasons == ("size",)
    assert "max_image_bytes" in small[0].exclusion_detail and "197x233x189" in small[0].exclusion_detail
    assert small[0].iqs is None and small[0].anatomy_mask_path is None
    default = _build(tree, tmp_path / "out_default", _config(), SourceKind.NIFTI)
    assert default[0].included, default[0].exclusion_detail


@pytest.fixture(scope="module")
def axial(mni_t1: nib.Nifti1Image) -> list:
    return Mni(mni_t1).planes(*AXIAL)  # 24 slices of 72 x 72 int16: 243 KiB of pixel data


def test_series_above_max_series_bytes_is_refused_before_dcm2niix_runs(tmp_path, axial, pydicom_mr,
                                                                       monkeypatch) -> None:
    tree = tmp_path / "src"
    write_series(tree / "t1", axial, AXIAL, pydicom_mr, "T1 MPRAGE")

    def no_dcm2niix() -> str:
        raise AssertionError("dcm2niix must not run on a series above the limit")
    monkeypatch.setattr(dicom_convert, "dcm2niix_binary", no_dcm2niix)
    rows = _build(tree, tmp_path / "out", _config(max_series_bytes=100_000), SourceKind.DICOM)
    assert rows[0].exclusion_reasons == ("size",)
    assert "max_series_bytes" in rows[0].exclusion_detail and "24 files" in rows[0].exclusion_detail
    assert not list((tmp_path / "out").rglob("*.nii*"))


def _lying_deflated_series(tree: Path, axial: list, template: Path, extra: int) -> None:
    """A deflated series whose headers say 72 x 72 but whose pixel data hold ``extra`` more bytes."""
    def lie(ds: pydicom.Dataset, i: int) -> None:
        ds.file_meta.TransferSyntaxUID = DEFLATED
        ds.PixelData = ds.PixelData + bytes(extra)
    write_series(tree / "deflated", axial, AXIAL, template, "T1 deflated", edit=lie)


def test_inflating_a_deflated_series_stops_at_max_series_bytes(tmp_path, axial, pydicom_mr) -> None:
    tree = tmp_path / "src"
    _lying_deflated_series(tree, axial, pydicom_mr, extra=1024**2)  # 24 MiB once inflated
    assert sum(f.stat().st_size for f in tree.rglob("*.dcm")) < 1024**2
    rows = _build(tree, tmp_path / "out", _config(max_series_bytes=2 * 1024**2), SourceKind.DICOM)
    assert rows[0].exclusion_reasons == ("size",)
    assert "inflating deflated DICOM" in rows[0].exclusion_detail
    # the temporary folder and the inflated files are gone
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".convert-") or
                p.suffix == ".dcm"]


def test_deflated_series_within_the_limit_is_still_converted(tmp_path, axial, pydicom_mr) -> None:
    tree = tmp_path / "src"
    _lying_deflated_series(tree, axial, pydicom_mr, extra=0)
    rows = _build(tree, tmp_path / "out", _config(), SourceKind.DICOM)
    assert rows[0].included, rows[0].exclusion_detail
    assert rows[0].shape == (72, 72, 24)


def test_header_of_a_deflated_bomb_is_read_without_inflating_its_pixels(tmp_path, pydicom_mr) -> None:
    ds = pydicom.dcmread(pydicom_mr)
    ds.Rows = ds.Columns = 4096
    ds.PixelData = bytes(4096 * 4096 * 2)  # 32 MiB of zeros: 32 KiB deflated
    ds.file_meta.TransferSyntaxUID = DEFLATED
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    del ds
    assert (tmp_path / "bomb.dcm").stat().st_size < 1024**2
    tracemalloc.start()
    try:
        header = read_file_header(tmp_path, "bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert header is not None and header.error is None
    assert header.get("Rows") == 4096 and header.get("TransferSyntaxUID") == DEFLATED
    assert peak < 8 * 1024**2  # pydicom alone inflates all 32 MiB


def test_plain_nii_written_by_dcm2niix_is_found(tmp_path, axial, pydicom_mr, monkeypatch) -> None:
    # dcm2niix writes an uncompressed .nii for images above 2 GB even with -z y; "-z n" makes it
    # write one here, so the same code path is taken on a small series.
    monkeypatch.setattr(dicom_convert, "COMPRESS", ("-z", "n"))
    tree = tmp_path / "src"
    write_series(tree / "t1", axial, AXIAL, pydicom_mr, "T1 MPRAGE")
    rows = _build(tree, tmp_path / "out", _config(), SourceKind.DICOM)
    assert rows[0].included, rows[0].exclusion_detail
    assert rows[0].converted_path.endswith(".nii") and rows[0].shape == (72, 72, 24)
    data = np.asarray(nib.load(tmp_path / "out" / rows[0].converted_path).dataobj)
    assert np.array_equal(np.sort(data.ravel()), np.sort(np.stack([p for _, p in axial]).ravel()))
    # a rebuild reuses the .nii instead of converting again
    again = _build(tree, tmp_path / "out", _config(), SourceKind.DICOM)
    assert again[0].converted_path == rows[0].converted_path and again[0].included
