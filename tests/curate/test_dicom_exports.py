"""Odd hospital DICOM exports through ``curate build``: every series a row, good ones converted right.

The series are cut from the real MNI152 T1 (nilearn) along sagittal, coronal,
oblique and gantry-tilted planes, with pydicom's MR_small.dcm headers; the
non-MR objects and the Siemens mosaic are pydicom's and nibabel's own test files.
The geometry check samples the MNI template at the world coordinates of every
voxel of the converted NIfTI: the converted image must match it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from curate import pipeline
from curate.config import CurateConfig
from manifests.schema import ImageRecord, SourceKind
from tests.curate.dicom_factory import (AXIAL, CORONAL, N, OBLIQUE, PIXEL, PRIMARY, SAGITTAL, SLICE,
                                        SLICES, TEST_FILES, Mni, write_enhanced, write_series)


def _to_htj2k(ds: pydicom.Dataset, i: int) -> None:
    """Label the file High-Throughput JPEG 2000, which this dcm2niix build cannot decode."""
    from pydicom.encaps import encapsulate

    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(12000)])
    ds["PixelData"].VR = "OB"


def _export(root: Path, mni: Mni, template: Path) -> Path:
    tree = root / "export"
    axial = mni.planes(*AXIAL)
    write_series(tree / "PACS" / "DICOM", axial, AXIAL, template, "AX T1 SE",
           names=lambda i: f"ST000001/SE000001/IM{i:05d}")
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tree / "PACS" / "DICOMDIR")
    write_series(tree / "sag", mni.planes(*SAGITTAL), SAGITTAL, template, "SAG T1 MPRAGE")
    write_series(tree / "cor", mni.planes(*CORONAL), CORONAL, template, "COR T2 TSE")
    write_series(tree / "obl", mni.planes(*OBLIQUE), OBLIQUE, template, "OBL T2 FLAIR")
    tilt = float(np.degrees(np.arctan(1.0 / SLICE)))
    write_series(tree / "tilt", mni.planes(*AXIAL, shear=1.0), AXIAL, template, "AX T1 tilted",
           edit=lambda ds, i: setattr(ds, "GantryDetectorTilt", tilt))
    # one series in two folders, files named in no order, no InstanceNumber
    order = np.random.default_rng(7).permutation(SLICES)
    uid = generate_uid()
    shuffled = [axial[j] for j in order]
    for part, rows in (("a", shuffled[:12]), ("b", shuffled[12:])):
        write_series(tree / "split" / part, rows, AXIAL, template, "AX PD split", uid=uid, numbers=False,
               names=lambda i, part=part: f"{part}{(i * 7919) % 997:04d}")

    def echo(ds: pydicom.Dataset, i: int) -> None:
        ds.EchoNumbers, ds.EchoTime = (1, 10.0) if i < SLICES else (2, 80.0)
    second = [(p, (plane * 0.6).astype(np.int16)) for p, plane in axial]
    write_series(tree / "dual_echo", axial + second, AXIAL, template, "AX PD-T2 dual echo", edit=echo)
    write_series(tree / "fieldmap", axial + [(p, plane // 4) for p, plane in axial], AXIAL, template,
           "GRE field map", edit=lambda ds, i: setattr(ds, "ImageType", PRIMARY if i < SLICES else
                                                      ["ORIGINAL", "PRIMARY", "P", "NONE"]))
    shutil.copytree(tree / "sag", tree / "sag_exported_again")
    write_enhanced(tree / "enhanced" / "EMR0001.dcm", axial, template)
    write_series(tree / "ct", axial, AXIAL, template, "CT HEAD", edit=lambda ds, i: setattr(ds, "Modality", "CT"))
    (tree / "other").mkdir()
    for name in ("rtstruct.dcm", "test-SR.dcm"):
        shutil.copy(TEST_FILES / name, tree / "other" / name)
    report = pydicom.dcmread(template)  # a Siemens "CSA non-image" object: MR, but no pixels
    for keyword in ("Rows", "Columns", "PixelData"):
        delattr(report, keyword)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.3.12.2.1107.5.9.1"
    report.SeriesInstanceUID = generate_uid()
    report.save_as(tree / "other" / "csa.dcm", enforce_file_format=True)
    (tree / "mosaic").mkdir()
    for name in ("0.dcm", "1.dcm"):
        shutil.copy(Path(nib.__file__).parent / "tests" / "data" / name, tree / "mosaic" / name)

    def anonymous(ds: pydicom.Dataset, i: int) -> None:
        del ds.PatientID
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SeriesDescription, ds.PatientName = "T1 Schädel 頭部", "Müller^Jürgen"
    write_series(tree / "anonymous", axial, AXIAL, template, "", edit=anonymous)
    write_series(tree / "htj2k", axial, AXIAL, template, "T1 HTJ2K", edit=_to_htj2k)
    write_series(tree / "deflated", axial, AXIAL, template, "T2 deflated",
           edit=lambda ds, i: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.840.10008.1.2.1.99"))
    return tree


@pytest.fixture(scope="module")
def mni(mni_t1: nib.Nifti1Image) -> Mni:
    return Mni(mni_t1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mni: Mni, pydicom_mr: Path):
    """The odd export built once: ``(rows by source path and acquisition, output folder)``."""
    root = tmp_path_factory.mktemp("odd_dicom")
    tree = _export(root, mni, pydicom_mr)
    config = CurateConfig()
    # deflated files are small; the size rule is not what these tests are about
    config = dataclasses.replace(config, triage=dataclasses.replace(config.triage, min_file_size_bytes=20_000))
    result = pipeline.build(tree, root / "out", config,
                            pipeline.RunOptions(workers=1, source_kind=SourceKind.DICOM))
    rows: dict[tuple[str, str | None], ImageRecord] = {}
    for r in result.records:
        if r.derived_from is None:
            assert (r.source_path, r.acquisition) not in rows
            rows[(r.source_path, r.acquisition)] = r
    return rows, root / "out"


def _converted(row: ImageRecord, out: Path) -> nib.Nifti1Image:
    assert row.included and row.converted_path, (row.exclusion_reasons, row.exclusion_detail)
    return nib.load(str(out / row.converted_path))


def _match(img: nib.Nifti1Image, mni: Mni) -> float:
    """Correlation of the converted image with the MNI template sampled where its voxels are."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    ijk = np.indices(data.shape).reshape(3, -1)
    reference = mni.at_ras(img.affine[:3, :3] @ ijk + img.affine[:3, 3:4])
    return float(np.corrcoef(data.ravel(), reference)[0, 1])


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["PACS/DICOM/ST000001/SE000001", "sag", "cor", "obl", "split",
                                    "enhanced/EMR0001.dcm"])
def test_converted_series_lie_where_the_headers_say_and_the_row_has_their_geometry(built, mni, folder) -> None:
    rows, out = built
    row = rows[(folder, None)]
    img = _converted(row, out)
    assert _match(img, mni) > 0.99
    assert row.shape == img.shape and row.ndim == 3 and row.n_volumes == 1
    assert row.spacing_mm == pytest.approx(img.header.get_zooms()[:3])
    assert sorted(row.spacing_mm) == pytest.approx([PIXEL, PIXEL, SLICE])
    assert row.fov_mm == pytest.approx([n * s for n, s in zip(img.shape, row.spacing_mm)])


@pytest.mark.slow
def test_pacs_tree_with_dicomdir_gives_one_row_for_the_series_and_none_for_the_dicomdir(built) -> None:
    rows, _ = built
    assert not [key for key in rows if "DICOMDIR" in key[0]]
    assert rows[("PACS/DICOM/ST000001/SE000001", None)].modality == "T1w"


@pytest.mark.slow
def test_gantry_tilt_keeps_dcm2niix_corrected_image_and_its_sidecar(built, mni) -> None:
    rows, out = built
    row = rows[("tilt", None)]
    img = _converted(row, out)
    assert (out / row.converted_path.replace(".nii.gz", ".json")).exists()
    assert img.shape[1] > N  # the corrected stack is wider than one slice
    assert _match(img, mni) > 0.9
    assert any("differs from the DICOM headers" in w for w in row.warnings)


@pytest.mark.slow
def test_multi_echo_series_becomes_one_row_per_echo_each_converted_alone(built) -> None:
    rows, out = built
    first, second = rows[("dual_echo", "echo-1")], rows[("dual_echo", "echo-2")]
    assert (first.echo_time_s, second.echo_time_s) == pytest.approx((0.010, 0.080))
    a = np.asarray(_converted(first, out).dataobj, dtype=np.float64)
    b = np.asarray(_converted(second, out).dataobj, dtype=np.float64)
    assert a.shape == b.shape == (N, N, SLICES)
    assert b.sum() / a.sum() == pytest.approx(0.6, abs=0.01)


@pytest.mark.slow
def test_phase_part_of_a_series_is_its_own_excluded_row(built) -> None:
    rows, out = built
    magnitude, phase = rows[("fieldmap", "part-mag")], rows[("fieldmap", "part-phase")]
    assert _converted(magnitude, out).shape == (N, N, SLICES)
    assert phase.exclusion_reasons == ("modality",) and "phase image" in phase.exclusion_detail


@pytest.mark.slow
def test_instances_exported_twice_count_once(built) -> None:
    rows, out = built
    assert ("sag_exported_again", None) not in rows  # one series, named by the folder kept
    row = rows[("sag", None)]
    assert row.n_volumes == 1 and row.ndim == 3
    assert any(w.startswith(f"{SLICES} duplicate file(s)") for w in row.warnings)


@pytest.mark.slow
def test_siemens_mosaic_geometry_comes_from_the_tiles(built) -> None:
    rows, out = built
    row = rows[("mosaic", None)]
    assert row.modality == "DWI" and "fov" not in row.exclusion_reasons
    img = nib.load(str(out / row.converted_path))
    assert row.shape == img.shape == (36, 36, 48, 2)


@pytest.mark.slow
def test_non_mr_objects_are_excluded_for_their_modality_not_as_unreadable(built) -> None:
    rows, _ = built
    for key, word in ((("ct", None), "DICOM CT image"), (("other/rtstruct.dcm", None), "DICOM RTSTRUCT"),
                      (("other/test-SR.dcm", None), "DICOM SR with no image data"),
                      (("other/csa.dcm", None), "DICOM MR with no image data (SOP class 1.3.12.2.1107.5.9.1)")):
        assert "modality" in rows[key].exclusion_reasons and "unreadable" not in rows[key].exclusion_reasons
        assert word in rows[key].exclusion_detail


@pytest.mark.slow
def test_series_without_patient_id_and_with_non_ascii_names_is_curated(built) -> None:
    rows, out = built
    row = rows[("anonymous", None)]
    assert row.subject is None and row.series_description == "T1 Schädel 頭部"
    assert _converted(row, out).shape == (N, N, SLICES)


@pytest.mark.slow
def test_undecodable_compression_is_unreadable_with_dcm2niix_reason_in_source_names(built) -> None:
    rows, _ = built
    row = rows[("htj2k", None)]
    assert row.exclusion_reasons == ("unreadable",) and row.converted_path is None
    assert "dcm2niix failed" in row.exclusion_detail and "HTJ2K" in row.exclusion_detail
    assert "htj2k/IM" in row.exclusion_detail and ".convert-" not in row.exclusion_detail


@pytest.mark.slow
def test_deflated_series_is_inflated_and_converted(built, mni) -> None:
    rows, out = built
    assert _match(_converted(rows[("deflated", None)], out), mni) > 0.99


def test_files_with_empty_series_uid_are_grouped_by_folder_and_series_number(tmp_path, mni, pydicom_mr) -> None:
    tree = tmp_path / "export"
    planes = mni.planes(*AXIAL, n_slices=6)
    for folder, number in (("a", 3), ("b", 4)):
        write_series(tree / folder, planes, AXIAL, pydicom_mr, "T1 SE", uid="",
               edit=lambda ds, i, number=number: setattr(ds, "SeriesNumber", number))
    rows = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1)).records
    assert sorted(r.source_path for r in rows) == ["a", "b"]
    for row in rows:
        assert row.shape == (N, N, 6) and row.series_instance_uid is None
        assert "empty SeriesInstanceUID" in row.warnings[0]


def test_series_that_gained_slices_since_the_last_build_is_converted_again(tmp_path, mni, pydicom_mr) -> None:
    tree, out = tmp_path / "export", tmp_path / "out"
    planes = mni.planes(*AXIAL)
    uid = generate_uid()
    write_series(tree / "s", planes[:16], AXIAL, pydicom_mr, "T1 SE", uid=uid)
    config = CurateConfig()
    config = dataclasses.replace(config, triage=dataclasses.replace(config.triage, min_file_size_bytes=20_000))
    options = pipeline.RunOptions(workers=1, source_kind=SourceKind.DICOM)
    (first,) = pipeline.build(tree, out, config, options).records
    write_series(tree / "s", planes, AXIAL, pydicom_mr, "T1 SE", uid=uid)  # the rest of the series arrives
    (second,) = pipeline.build(tree, out, config, options).records
    assert first.shape == (N, N, 16) and second.shape == (N, N, SLICES)
    assert nib.load(str(out / second.converted_path)).shape == (N, N, SLICES)
    assert not (out / first.converted_path).exists()
    assert not [w for w in second.warnings if "differs from the DICOM headers" in w]


def test_dicom_files_without_preamble_or_extension_are_read(tmp_path, mni, pydicom_mr) -> None:
    from pydicom.dataset import FileMetaDataset

    tree = tmp_path / "export"
    write_series(tree / "old", mni.planes(*AXIAL, n_slices=6), AXIAL, pydicom_mr, "T1 SE", names=lambda i: f"I{i}")
    for path in (tree / "old").iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta, ds.preamble = FileMetaDataset(), None
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    (tree / "old" / "NOTES").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    result = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1))
    (row,) = result.records
    assert row.source_path == "old" and row.shape == (N, N, 6)
    assert any("x1" in w for w in result.warnings)  # NOTES is not DICOM: skipped, named in a warning


@pytest.mark.parametrize("implicit", [False, True])
def test_ge_magnitude_and_phase_in_one_series_are_told_apart_by_ge_private_image_type(
        tmp_path, mni, pydicom_mr, implicit) -> None:
    tree = tmp_path / "export"
    planes = mni.planes(*AXIAL, n_slices=6)

    def ge(ds: pydicom.Dataset, i: int) -> None:
        ds.Manufacturer, ds.ImageType = "GE MEDICAL SYSTEMS", ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", 0 if i < 6 else 1)
    write_series(tree / "swi", planes + planes, AXIAL, pydicom_mr, "SWAN", edit=ge)
    if implicit:
        for path in (tree / "swi").iterdir():
            ds = pydicom.dcmread(path)
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
            ds.save_as(path, enforce_file_format=True)
    rows = {r.acquisition: r for r in pipeline.index(tree, tmp_path / "out", CurateConfig(),
                                                      pipeline.RunOptions(workers=1)).records}
    assert set(rows) == {"part-mag", "part-phase"}
    assert rows["part-mag"].shape == (N, N, 6) and rows["part-mag"].n_volumes == 1
    assert "phase image" in rows["part-phase"].exclusion_detail
    assert "phase image" not in (rows["part-mag"].exclusion_detail or "")


def test_damaged_headers_give_rows_not_a_failed_index(tmp_path, pydicom_mr) -> None:
    """Damage found by fuzzing pydicom's test files: each once crashed the whole index."""
    raw = pydicom_mr.read_bytes()
    rows_tag = raw.find(b"\x28\x00\x10\x00US")  # Rows, explicit VR
    tree = tmp_path / "export"
    tree.mkdir()
    (tree / "unknown_vr.dcm").write_bytes(raw[:rows_tag + 4] + b"U4" + raw[rows_tag + 6:])
    (tree / "odd_length.dcm").write_bytes(raw[:rows_tag + 6] + b"\x03\x00" + raw[rows_tag + 8:])
    (tree / "IM_unknown_vr").write_bytes((tree / "unknown_vr.dcm").read_bytes())
    result = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1))
    rows = {r.source_path: r for r in result.records}
    assert set(rows) == {"unknown_vr.dcm", "odd_length.dcm"}
    assert "NotImplementedError" in rows["unknown_vr.dcm"].exclusion_detail
    assert "BytesLengthException" in rows["odd_length.dcm"].exclusion_detail
    assert any("(no extension) x1" in w for w in result.warnings)


def test_united_imaging_vframe_mosaic_geometry_comes_from_its_grid(tmp_path, pydicom_mr) -> None:
    """UIH writes a DWI volume per file as a 4 x 5 grid of 64 x 64 tiles, with no ImagePositionPatient
    (dcm2niix's dcm_qa_uih: 64x64x20x17); a 3 x 5 grid of 14 tiles here."""
    tree = tmp_path / "export"
    uid = generate_uid()
    for volume in range(3):
        ds = pydicom.dcmread(pydicom_mr)
        ds.Rows, ds.Columns, ds.AcquisitionMatrix = 192, 320, [64, 0, 0, 64]
        ds.PixelData = np.ones((192, 320), np.int16).tobytes()
        ds.ImageType, ds.SeriesDescription = ["ORIGINAL", "PRIMARY", "M", "VFRAME"], "dti_tra_dir16"
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = uid, generate_uid(), volume + 1
        ds.PixelSpacing, ds.SpacingBetweenSlices = [3.5, 3.5], 4.2
        del ds.ImagePositionPatient
        tiles = []
        for k in range(14):
            item = Dataset()
            item.ImagePositionPatient = [-110.0, -110.0, 4.2 * k]
            tiles.append(item)
        ds.private_block(0x0065, "Image Private Header", create=True).add_new(0x50, "SQ", Sequence(tiles))
        (tree / "dti").mkdir(parents=True, exist_ok=True)
        ds.save_as(tree / "dti" / f"{volume:08d}.dcm", enforce_file_format=True)
    (row,) = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1)).records
    assert row.modality == "DWI" and row.exclusion_reasons == ("modality",)
    assert row.shape == (64, 64, 14, 3) and row.spacing_mm == pytest.approx((3.5, 3.5, 4.2))


def test_enhanced_files_one_per_echo_split_on_their_frames_echo_time(tmp_path, mni, pydicom_mr) -> None:
    """Siemens XA writes a field map's two echoes as two enhanced files, the echo time per frame
    only (dcm2niix's dcm_qa_xa30 writes _e1 and _e2)."""
    planes = mni.planes(*AXIAL, n_slices=8)
    tree = tmp_path / "export"
    uid = generate_uid()
    for echo, time in ((1, 10.0), (2, 12.46)):
        path = tree / "fmap" / f"{echo:04d}.dcm"
        write_enhanced(path, planes, pydicom_mr)
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesDescription = uid, "gre_field_mapping"
        del ds.EchoTime, ds.EchoNumbers
        for frame in ds.PerFrameFunctionalGroupsSequence:
            item = Dataset()
            item.EffectiveEchoTime = time
            frame.MREchoSequence = Sequence([item])
        ds.save_as(path, enforce_file_format=True)
    rows = {r.acquisition: r for r in pipeline.index(tree, tmp_path / "out", CurateConfig(),
                                                      pipeline.RunOptions(workers=1)).records}
    assert set(rows) == {"echo-1", "echo-2"}
    assert rows["echo-2"].echo_time_s == pytest.approx(0.01246)
    assert rows["echo-1"].shape == (N, N, 8) and rows["echo-1"].n_volumes == 1
