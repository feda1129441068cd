"""Unusual but legitimate NIfTI files: read as images, or excluded with a clear reason.

Every variant is made from a real image (nilearn's MNI152 T1, taken every
third voxel: 3 mm, 66 x 78 x 63; dipy's small_64D DWI).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from curate import pipeline
from curate.arrays import prepare
from curate.config import IqsConfig, TriageConfig, load_config_text
from curate.finalize import apply_iqs
from curate.io import UnreadableImage, read_image
from curate.stages.thumbnails import thumbnail_path
from curate.triage import triage_reasons
from manifests.schema import ImageRecord


@pytest.fixture(scope="module")
def t1(mni_t1: nib.Nifti1Image) -> nib.Nifti1Image:
    """The MNI T1 at 3 mm (every third voxel), int16."""
    data = np.asarray(mni_t1.dataobj, np.float32)[::3, ::3, ::3]
    data = np.round(data / data.max() * 1000).astype(np.int16)
    return nib.Nifti1Image(data, mni_t1.affine @ np.diag([3.0, 3.0, 3.0, 1.0]))


def _data(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj, np.float32)


def _with_sform(img: nib.Nifti1Image, sform: np.ndarray, qform: np.ndarray | None) -> nib.Nifti1Image:
    out = nib.Nifti1Image(np.asarray(img.dataobj), None)
    out.header.set_zooms(img.header.get_zooms())
    out.header.set_sform(sform, code=2)
    out.header.set_qform(qform, code=1 if qform is not None else 0)
    return out


def _patched(img: nib.Nifti1Image, offset: int, values: np.ndarray) -> bytes:
    """The single-file bytes of ``img`` with raw header bytes overwritten at ``offset``."""
    raw = bytearray(img.to_bytes())
    blob = values.tobytes()
    raw[offset: offset + len(blob)] = blob
    return bytes(raw)


# --------------------------------------------------------------------------- read_image


def test_complex_data_is_read_as_magnitude(t1, tmp_path) -> None:
    path = tmp_path / "T1_complex.nii.gz"
    nib.save(nib.Nifti1Image(_data(t1).astype(np.complex64) * 1j, t1.affine), str(path))
    image = read_image(path)  # the real part is all zero: the old read found an empty image
    assert np.array_equal(image.data, _data(t1))
    assert image.notes == ("complex data: magnitude used",)


def test_rgb_data_is_unreadable_with_a_reason(t1, tmp_path) -> None:
    rgb = np.zeros(t1.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"] = (_data(t1) // 4).astype(np.uint8)
    path = tmp_path / "T1_rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, t1.affine), str(path))
    with pytest.raises(UnreadableImage, match="colour data"):
        read_image(path)


def test_singular_sform_falls_back_to_the_qform(t1, tmp_path) -> None:
    singular = t1.affine.copy()
    singular[:, 2] = singular[:, 0]
    path = tmp_path / "T1.nii"
    nib.save(_with_sform(t1, singular, t1.affine), str(path))
    image = read_image(path)
    assert np.allclose(image.affine, t1.affine)
    assert image.notes == ("sform is not a valid transform (singular or non-finite)", "qform used")


def test_zero_sform_without_qform_falls_back_to_voxel_sizes(t1, tmp_path) -> None:
    zero = np.zeros((4, 4))
    zero[3, 3] = 1
    path = tmp_path / "T1.nii"
    nib.save(_with_sform(t1, zero, None), str(path))
    image = read_image(path)
    assert np.allclose(np.abs(np.diag(image.affine)[:3]), 3.0) and image.zooms == (3.0, 3.0, 3.0)
    assert any("orientation unknown" in n for n in image.notes)


def test_invalid_quaternion_is_passed_over(t1, tmp_path) -> None:
    img = _with_sform(t1, t1.affine, t1.affine)
    img.header.set_sform(None, code=0)
    path = tmp_path / "T1.nii"
    # quatern_b/c/d at bytes 256-267: b^2 + c^2 + d^2 > 1 is no rotation (nibabel refuses to load it)
    path.write_bytes(_patched(img, 256, np.array([1.5, 1.5, 1.5], "<f4")))
    with pytest.raises(ValueError):
        nib.load(str(path))
    image = read_image(path)
    assert image.data.shape == t1.shape
    assert image.notes[0].startswith("qform is not a valid transform")


def test_zero_or_nan_pixdim_takes_voxel_sizes_from_the_sform(t1, tmp_path) -> None:
    for name, pixdim in (("zero", np.zeros(3, "<f4")), ("nan", np.full(3, np.nan, "<f4"))):
        path = tmp_path / f"T1_{name}.nii"
        path.write_bytes(_patched(t1, 80, pixdim))  # pixdim[1:4] at bytes 80-91
        image = read_image(path)
        assert image.zooms == pytest.approx((3.0, 3.0, 3.0)), name
        assert "disagrees with the affine" in image.notes[0]


def test_compression_is_told_by_content_not_name(t1, tmp_path) -> None:
    raw = t1.to_bytes()
    (tmp_path / "plain.nii.gz").write_bytes(raw)
    (tmp_path / "packed.nii").write_bytes(gzip.compress(raw))
    for name in ("plain.nii.gz", "packed.nii"):
        image = read_image(tmp_path / name)
        assert np.array_equal(image.data, _data(t1)), name
        assert "gzip-compressed although" in image.notes[0]


def test_two_d_image_is_a_one_slice_volume(t1, tmp_path) -> None:
    path = tmp_path / "T1_slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj)[:, :, 30], t1.affine), str(path))
    image = read_image(path)
    assert image.data.shape == (*t1.shape[:2], 1) and len(image.zooms) == 3


def test_truncated_big_header_is_unreadable_in_one_line(t1, tmp_path) -> None:
    header = t1.header.copy()
    header.set_data_shape((512, 512, 512))
    path = tmp_path / "T1_big.nii"
    # header says 512^3 int16 (256 MiB); the file holds the 3 mm T1's 0.6 MiB
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.asarray(t1.dataobj).tobytes())
    with pytest.raises(UnreadableImage) as info:
        read_image(path)
    assert "Expected" in str(info.value) and "\n" not in str(info.value)


def test_length_one_axes_after_the_third_are_dropped(t1, tmp_path) -> None:
    path = tmp_path / "T1_5d.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj)[..., None, None], t1.affine), str(path))
    image = read_image(path)
    assert image.data.shape == t1.shape and image.zooms == (3.0, 3.0, 3.0)
    # volumes in the fifth dimension (x, y, z, 1, n): a 4D series of n volumes
    series = np.stack([np.asarray(t1.dataobj)] * 3, axis=-1)[:, :, :, None, :]
    img = nib.Nifti1Image(series, t1.affine)
    img.header.set_zooms((3.0, 3.0, 3.0, 1.0, 7.0))
    nib.save(img, str(path))
    image = read_image(path)
    assert image.data.shape == (*t1.shape, 3) and image.zooms == (3.0, 3.0, 3.0, 7.0)


def test_upper_case_nifti_names_are_found_and_indexed(t1, tmp_path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    nib.save(t1, str(src / "T1_MPRAGE.NII"))  # the only image: the folder must not pass for DICOM
    (src / "T2.Nii.Gz").write_bytes(gzip.compress(t1.to_bytes()))  # nib.save would lower-case it
    (src / "T2.json").write_text('{"SeriesDescription": "T2 TSE"}')
    config = load_config_text("[triage]\nmin_file_size_bytes = 0\n")  # the 3 mm T1 is 0.2 MB
    result = pipeline.index(src, tmp_path / "out", config, pipeline.RunOptions(workers=1))
    rows = {r.source_path: r for r in result.records}
    assert set(rows) == {"T1_MPRAGE.NII", "T2.Nii.Gz"}
    assert rows["T2.Nii.Gz"].series_description == "T2 TSE"  # same-stem sidecar found
    assert [r.exclusion_reasons for r in rows.values()] == [(), ()]


def test_five_d_header_of_one_volume_is_triaged_as_3d() -> None:
    facts = SimpleNamespace(modality="T1w", ndim=5, n_volumes=1, fov_mm=(200.0,) * 3,
                            spacing_mm=(1.0,) * 3, file_size_bytes=10**6)
    assert triage_reasons(facts, TriageConfig()) == ([], [])
    facts.n_volumes = 3
    assert triage_reasons(facts, TriageConfig())[0] == ["modality"]


# --------------------------------------------------------------------------- arrays, finalize


def test_nan_patch_does_not_spread_through_resampling(t1) -> None:
    data = _data(t1)
    holed = data.copy()
    holed[20:24, 30:34, 25:29] = np.nan
    holed[40:42, 40:42, 40:42] = np.inf
    clean = prepare(data, t1.affine, None, None)
    out = prepare(holed, t1.affine, None, None)
    assert out.image.shape == clean.image.shape and np.isfinite(out.image).all()
    # One NaN used to fill whole B-spline lines, and z-scoring then zeroed the entire array.
    assert np.corrcoef(out.image.ravel(), clean.image.ravel())[0, 1] > 0.98
    assert any("non-finite" in n for n in out.notes)


def test_unreadable_rows_get_no_group_score() -> None:
    def row(image_id: str, **kw) -> ImageRecord:
        return ImageRecord(image_id=image_id, dataset="d", source_kind="nifti", source_path=image_id,
                           modality="T1w", **kw)

    scored = row("a", included=True, iqs_noise=2.0, iqs_blur=2.0, iqs_artifact=2.0,
                 fov_suboptimal=False, corrupted=False)
    broken = row("b", included=False, exclusion_reasons=("unreadable",), iqs=1.5, iqs_source="group")
    small = row("c", included=False, exclusion_reasons=("fov",))
    out = {r.image_id: r for r in apply_iqs([scored, broken, small], IqsConfig())}
    assert out["a"].iqs == pytest.approx(2.0) and out["c"].iqs == pytest.approx(2.0)
    assert out["b"].iqs is None and out["b"].iqs_source is None  # a stale score is cleared too


# --------------------------------------------------------------------------- whole builds


def _dwi(folder: Path, name: str, affine: np.ndarray | None) -> None:
    """dipy's small_64D, first 10 volumes, 3x upsampled to 30^3 at 2 mm, with gradient files."""
    from dipy.data import get_fnames
    from scipy import ndimage

    nii, bval, bvec = get_fnames(name="small_64D")
    data = np.asarray(nib.load(nii).dataobj, np.float32)[..., :10]
    big = np.stack([ndimage.zoom(data[..., v], 3, order=1) for v in range(10)], axis=-1)
    img = nib.Nifti1Image(big, affine)
    if affine is None:  # a zero sform, the rest of the header intact
        img.header.set_zooms((2.0, 2.0, 2.0, 1.0))
        img.header.set_sform(np.diag([0.0, 0.0, 0.0, 1.0]), code=2)
    nib.save(img, str(folder / f"{name}.nii.gz"))
    (folder / f"{name}.bval").write_text(" ".join(Path(bval).read_text().split()[:10]) + "\n")
    vectors = np.loadtxt(bvec)
    vectors = vectors if vectors.shape[0] == 3 else vectors.T  # written 3 x n
    np.savetxt(folder / f"{name}.bvec", vectors[:, :10])


@pytest.fixture(scope="module")
def odd_build(t1, tmp_path_factory) -> tuple[Path, dict[str, ImageRecord]]:
    """One clinical-folder build over every odd variant (slow: masks, IQS, arrays, DWI maps)."""
    src = tmp_path_factory.mktemp("odd") / "export"
    src.mkdir()
    data = _data(t1)
    zero = np.diag([0.0, 0.0, 0.0, 1.0])
    nib.save(t1, str(src / "T1_ref.nii.gz"))
    nib.save(nib.Nifti1Image(data.astype(np.complex64) * 1j, t1.affine), str(src / "T1_complex.nii.gz"))
    rgb = np.zeros(t1.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, t1.affine), str(src / "T1_rgb.nii.gz"))
    nib.save(_with_sform(t1, zero, None), str(src / "T1_zero_affine.nii.gz"))
    naninf = data.copy()
    naninf[20:24, 30:34, 25:29] = np.nan
    naninf[40:42, 40:42, 40:42] = np.inf
    nib.save(nib.Nifti1Image(naninf, t1.affine), str(src / "T1_naninf.nii.gz"))
    (src / "T1_packed.nii").write_bytes(gzip.compress(t1.to_bytes()))
    nib.save(t1, str(src / "T1_SHOUT.NII"))
    hot = data.copy()
    hot[33, 40, 30] = 1e9
    nib.save(nib.Nifti1Image(hot, t1.affine), str(src / "T1_hotvoxel.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj)[..., None, None], t1.affine), str(src / "T1_padded5d.nii.gz"))
    _dwi(src, "DTI_zero_affine", None)
    out = tmp_path_factory.mktemp("odd_out")
    config = load_config_text("[triage]\nmin_file_size_bytes = 0\n")
    result = pipeline.build(src, out, config, pipeline.RunOptions(workers=1))
    rows = {f"{r.source_path}:{r.modality}" if r.derived_from else r.source_path: r
            for r in result.records}
    return out, rows


def _went_through_every_stage(out: Path, row: ImageRecord) -> None:
    assert row.included, row.exclusion_detail
    assert row.array_path and (out / row.array_path).exists()
    assert row.anatomy_mask_path and (out / row.anatomy_mask_path).exists()
    assert row.iqs is not None and row.iqs_source == "auto"
    assert thumbnail_path(out, row.image_id).exists()


@pytest.mark.slow
def test_every_odd_file_gets_a_row_and_included_ones_every_stage(odd_build) -> None:
    out, rows = odd_build
    assert {k for k in rows if ":" not in k} == {
        "T1_ref.nii.gz", "T1_complex.nii.gz", "T1_rgb.nii.gz", "T1_zero_affine.nii.gz",
        "T1_naninf.nii.gz", "T1_packed.nii", "T1_SHOUT.NII", "T1_padded5d.nii.gz",
        "T1_hotvoxel.nii.gz", "DTI_zero_affine.nii.gz"}
    for name in ("T1_ref.nii.gz", "T1_complex.nii.gz", "T1_zero_affine.nii.gz", "T1_naninf.nii.gz",
                 "T1_packed.nii", "T1_SHOUT.NII", "T1_padded5d.nii.gz", "T1_hotvoxel.nii.gz"):
        _went_through_every_stage(out, rows[name])
    assert any(w.startswith("read: complex data") for w in rows["T1_complex.nii.gz"].warnings)
    assert any("orientation unknown" in w for w in rows["T1_zero_affine.nii.gz"].warnings)
    assert not any("internal error" in w for r in rows.values() for w in r.warnings)


@pytest.mark.slow
def test_rgb_file_is_excluded_unreadable_without_a_score(odd_build) -> None:
    _, rows = odd_build
    rgb = rows["T1_rgb.nii.gz"]
    assert rgb.exclusion_reasons == ("unreadable",)
    assert "colour data" in (rgb.exclusion_detail or "")
    assert rgb.iqs is None  # no group median for an image that could not be read


@pytest.mark.slow
def test_nan_patch_array_keeps_the_image(odd_build) -> None:
    from curate.array_file import read_array

    out, rows = odd_build
    holed, _, _ = read_array(out / rows["T1_naninf.nii.gz"].array_path)
    clean, _, _ = read_array(out / rows["T1_ref.nii.gz"].array_path)
    assert holed.shape == clean.shape and float(holed.std()) > 0.5
    assert np.corrcoef(holed.ravel(), clean.ravel())[0, 1] > 0.98


@pytest.mark.slow
def test_one_hot_voxel_is_clipped_for_every_stage(odd_build) -> None:
    from curate.array_file import read_array

    out, rows = odd_build
    hot, ref = rows["T1_hotvoxel.nii.gz"], rows["T1_ref.nii.gz"]
    assert any("1 outlier voxels" in w for w in hot.warnings)
    # Before: the IQS stage raised (row lost as unreadable); unclipped, the z-scored
    # array was ~0 everywhere but the hot voxel.
    assert hot.iqs == pytest.approx(ref.iqs, abs=0.25)
    assert hot.anonymization == ref.anonymization
    image, _, _ = read_array(out / hot.array_path)
    clean, _, _ = read_array(out / ref.array_path)
    assert np.corrcoef(image.ravel(), clean.ravel())[0, 1] > 0.98


@pytest.mark.slow
def test_dwi_with_zero_affine_still_gives_maps(odd_build) -> None:
    out, rows = odd_build
    source = rows["DTI_zero_affine.nii.gz"]
    assert source.exclusion_reasons == ("modality",), source.exclusion_detail
    for modality in ("FA", "MD", "T2w"):
        child = rows[f"DTI_zero_affine.nii.gz:{modality}"]
        assert child.included and child.derived_from == source.image_id
        sidecar = out / child.derived_path.replace(".nii.gz", ".json")
        assert json.loads(sidecar.read_text())["SourceImageId"] == source.image_id
        assert nib.load(out / child.derived_path).shape == (30, 30, 30)

