"""Header-only reads agree with nibabel on every NIfTI flavour; bad files raise UnreadableImage."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate.io import UnreadableImage, read_header, read_image, write_nifti


@pytest.mark.parametrize("name, klass, endian", [
    ("a.nii.gz", nib.Nifti1Image, "<"), ("a.nii", nib.Nifti1Image, ">"),
    ("b.nii.gz", nib.Nifti2Image, "<"), ("b.nii", nib.Nifti2Image, ">"),
])
def test_header_read_matches_nibabel(tmp_path: Path, dipy_dwi, name, klass, endian) -> None:
    source = nib.load(str(dipy_dwi[0]))
    header = klass.header_class(endianness=endian)
    img = klass(np.asarray(source.dataobj), source.affine, header)
    nib.save(img, str(tmp_path / name))
    ours = read_header(tmp_path / name)
    theirs = nib.load(str(tmp_path / name))
    assert ours.shape == theirs.shape
    assert ours.zooms == pytest.approx(theirs.header.get_zooms())
    assert ours.dtype == str(theirs.get_data_dtype().newbyteorder("="))


@pytest.mark.parametrize("payload", [b"", b"\x1f\x8b\x08\x00garbage", b"x" * 100, b"\x00" * 400])
def test_bad_headers_raise_unreadable(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(payload)
    with pytest.raises(UnreadableImage, match="header"):
        read_header(path)


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage):
        read_image(tmp_path / "nope.nii.gz")


def test_write_nifti_is_atomic_and_round_trips(tmp_path: Path, mni_t1) -> None:
    data = np.asarray(mni_t1.dataobj)[::4, ::4, ::4]
    target = tmp_path / "sub" / "x.nii.gz"
    write_nifti(target, data, mni_t1.affine)
    assert [p.name for p in target.parent.iterdir()] == ["x.nii.gz"]
    back = read_image(target)
    np.testing.assert_allclose(back.data, data)
    np.testing.assert_allclose(back.affine, mni_t1.affine)
