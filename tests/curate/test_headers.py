"""The nibabel-free header reader agrees with nibabel's own NIfTI layouts and type codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate import headers


@pytest.mark.parametrize("size, header_dtype", [(348, nib.nifti1.header_dtype),
                                                (540, nib.nifti2.header_dtype)])
def test_field_offsets_are_nibabels(size: int, header_dtype: np.dtype) -> None:
    layout = headers.LAYOUTS[size]
    assert header_dtype.itemsize == layout.size
    fields = header_dtype.fields
    assert fields["magic"][1] == layout.magic[0] and fields["magic"][0].itemsize == layout.magic[1]
    assert fields["datatype"][1] == layout.datatype
    assert fields["dim"][1] == layout.dim[0]
    assert fields["dim"][0].base.itemsize == np.dtype(layout.dim[1]).itemsize
    assert fields["pixdim"][1] == layout.pixdim[0]
    assert fields["pixdim"][0].base.itemsize == np.dtype(layout.pixdim[1]).itemsize
    assert fields["sform_code"][1] == layout.sform_code[0]
    assert fields["sform_code"][0].itemsize == np.dtype(layout.sform_code[1]).itemsize
    for row in ("srow_x", "srow_y", "srow_z"):  # srow_y and srow_z follow srow_x
        step = ("srow_x", "srow_y", "srow_z").index(row) * 4 * np.dtype(layout.srow_x[1]).itemsize
        assert fields[row][1] == layout.srow_x[0] + step
        assert fields[row][0].base.itemsize == np.dtype(layout.srow_x[1]).itemsize


@pytest.mark.parametrize("code", sorted(k for k in nib.nifti1.data_type_codes.code if isinstance(k, int)))
def test_every_datatype_code_names_nibabels_dtype(tmp_path: Path, code: int) -> None:
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header["datatype"] = code
    path = tmp_path / "h.nii"
    path.write_bytes(header.binaryblock + b"\x00" * 4)
    assert headers.read_header(path).dtype == str(nib.nifti1.data_type_codes.dtype[code])


def test_unknown_datatype_code_is_unreadable(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    raw = bytearray(header.binaryblock)
    raw[70:72] = (999).to_bytes(2, "little")
    (tmp_path / "h.nii").write_bytes(bytes(raw) + b"\x00" * 4)
    with pytest.raises(headers.UnreadableImage, match="datatype"):
        headers.read_header(tmp_path / "h.nii")


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_zero_or_nan_pixdim_takes_voxel_sizes_from_the_sform(tmp_path: Path, mni_t1: nib.Nifti1Image,
                                                             klass: type) -> None:
    affine = mni_t1.affine @ np.diag([2.0, 3.0, 4.0, 1.0])
    img = klass(np.zeros((20, 20, 20), np.int16), affine)
    for value, sform_code, expected in ((0.0, 2, (2.0, 3.0, 4.0)), (np.nan, 2, (2.0, 3.0, 4.0)),
                                        (np.nan, 0, (1.0, 1.0, 1.0))):
        img.header["pixdim"][1:4] = value
        img.header["sform_code"] = sform_code
        path = tmp_path / "h.nii"
        path.write_bytes(img.header.binaryblock + b"\x00" * 4)
        assert headers.read_header(path).zooms == pytest.approx(expected), (value, sform_code)


def test_gzip_header_split_across_reads(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    # Level-0 gzip stores data uncompressed, so the 540 header bytes straddle read chunks.
    import gzip

    nib.save(mni_t1, str(tmp_path / "a.nii"))
    raw = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "b.nii.gz").write_bytes(gzip.compress(raw, compresslevel=0))
    ours = headers.read_header(tmp_path / "b.nii.gz")
    assert ours.shape == mni_t1.shape
    assert ours.zooms == pytest.approx(mni_t1.header.get_zooms())


def test_index_path_does_not_import_nibabel_pandas_or_distributed() -> None:
    code = ("import sys; import curate.indexing, curate.cli; "
            "print(sorted(m for m in ('nibabel', 'distributed', 'scipy', 'torch', 'pydicom') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
