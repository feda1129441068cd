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
from scipy.ndimage import map_coordinates

from curate import pipeline
from curate.config import CurateConfig
from curate.dicom import split_series
from curate.dicom_convert import convert_series, failure_reason, pick_output
from curate.io import UnreadableImage
from manifests.schema import ImageRecord, SourceKind

AXIAL = (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
SAGITTAL = (np.array([0, 1.0, 0]), np.array([0, 0, -1.0]))
CORONAL = (np.array([1.0, 0, 0]), np.array([0, 0, -1.0]))
_C, _S = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
OBLIQUE = (AXIAL[0], np.array([0, _C, _S]))
LPS = np.diag([-1.0, -1.0, 1.0])
N, PIXEL, SLICE, SLICES = 72, 3.0, 4.0, 24
PRIMARY = ["ORIGINAL", "PRIMARY", "M", "NONE"]
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


class Mni:
    """The MNI T1 template and a sampler at LPS world coordinates."""

    def __init__(self, img: nib.Nifti1Image) -> None:
        data = np.asarray(img.dataobj, dtype=np.float32)
        self.data = data / data.max() * 1000
        self.inverse = np.linalg.inv(img.affine)

    def at_ras(self, ras: np.ndarray) -> np.ndarray:
        vox = self.inverse[:3, :3] @ ras + self.inverse[:3, 3:4]
        return map_coordinates(self.data, vox, order=1, cval=0)

    def planes(self, rowdir: np.ndarray, coldir: np.ndarray, shear: float = 0.0,
               n_slices: int = SLICES) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ImagePositionPatient, int16 plane) of slices centred on the brain."""
        normal = np.cross(rowdir, coldir)
        centre = np.array([0.0, 18.0, 10.0])
        r, c = np.mgrid[0:N, 0:N]
        out = []
        for k in range(n_slices):
            off = k - (n_slices - 1) / 2
            origin = (centre - (rowdir + coldir) * PIXEL * (N - 1) / 2 + normal * SLICE * off
                      + coldir * shear * off)
            lps = origin[:, None, None] + rowdir[:, None, None] * c * PIXEL + coldir[:, None, None] * r * PIXEL
            plane = self.at_ras(LPS @ lps.reshape(3, -1)).reshape(N, N)
            out.append((origin, np.round(plane).astype(np.int16)))
        return out


def _write(folder: Path, planes, orientation, template: Path, description: str, uid: str | None = None,
           names=None, numbers=True, edit=None) -> str:
    """One series, a file per slice, headers from ``template``."""
    uid = generate_uid() if uid is None else uid
    for i, (position, plane) in enumerate(planes):
        ds = pydicom.dcmread(template)
        ds.Rows, ds.Columns = plane.shape
        ds.PixelData = plane.tobytes()
        ds.PixelSpacing, ds.SliceThickness = [PIXEL, PIXEL], SLICE
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*orientation[0], *orientation[1])]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription, ds.ImageType, ds.PatientID = description, PRIMARY, "P001"
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(plane.min()), int(plane.max())
        del ds.SliceLocation
        if numbers:
            ds.InstanceNumber = i + 1
        else:
            del ds.InstanceNumber
        if edit is not None:
            edit(ds, i)
        path = folder / (names(i) if names else f"IM{i + 1:04d}.dcm")
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return uid


def _enhanced(path: Path, planes, template: Path) -> None:
    """An enhanced MR object: one file, a frame per slice, geometry in functional groups."""
    ds = pydicom.dcmread(template)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "SliceLocation"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = len(planes), planes[0][1].shape
    ds.PixelData = b"".join(p.tobytes() for _, p in planes)
    measures, orientation, shared = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [PIXEL, PIXEL], SLICE
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for position, _ in planes:
        frame, plane_position = Dataset(), Dataset()
        plane_position.ImagePositionPatient = [float(v) for v in position]
        frame.PlanePositionSequence = Sequence([plane_position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription, ds.ImageType = "T1 3D enhanced", PRIMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _to_htj2k(ds: pydicom.Dataset, i: int) -> None:
    """Label the file High-Throughput JPEG 2000, which this dcm2niix build cannot decode."""
    from pydicom.encaps import encapsulate

    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(12000)])
    ds["PixelData"].VR = "OB"


def _export(root: Path, mni: Mni, template: Path) -> Path:
    tree = root / "export"
    axial = mni.planes(*AXIAL)
    _write(tree / "PACS" / "DICOM", axial, AXIAL, template, "AX T1 SE",
           names=lambda i: f"ST000001/SE000001/IM{i:05d}")
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tree / "PACS" / "DICOMDIR")
    _write(tree / "sag", mni.planes(*SAGITTAL), SAGITTAL, template, "SAG T1 MPRAGE")
    _write(tree / "cor", mni.planes(*CORONAL), CORONAL, template, "COR T2 TSE")
    _write(tree / "obl", mni.planes(*OBLIQUE), OBLIQUE, template, "OBL T2 FLAIR")
    tilt = float(np.degrees(np.arctan(1.0 / SLICE)))
    _write(tree / "tilt", mni.planes(*AXIAL, shear=1.0), AXIAL, template, "AX T1 tilted",
           edit=lambda ds, i: setattr(ds, "GantryDetectorTilt", tilt))
    # one series in two folders, files named in no order, no InstanceNumber
    order = np.random.default_rng(7).permutation(SLICES)
    uid = generate_uid()
    shuffled = [axial[j] for j in order]
    for part, rows in (("a", shuffled[:12]), ("b", shuffled[12:])):
        _write(tree / "split" / part, rows, AXIAL, template, "AX PD split", uid=uid, numbers=False,
               names=lambda i, part=part: f"{part}{(i * 7919) % 997:04d}")

    def echo(ds: pydicom.Dataset, i: int) -> None:
        ds.EchoNumbers, ds.EchoTime = (1, 10.0) if i < SLICES else (2, 80.0)
    second = [(p, (plane * 0.6).astype(np.int16)) for p, plane in axial]
    _write(tree / "dual_echo", axial + second, AXIAL, template, "AX PD-T2 dual echo", edit=echo)
    _write(tree / "fieldmap", axial + [(p, plane // 4) for p, plane in axial], AXIAL, template,
           "GRE field map", edit=lambda ds, i: setattr(ds, "ImageType", PRIMARY if i < SLICES else
                                                      ["ORIGINAL", "PRIMARY", "P", "NONE"]))
    shutil.copytree(tree / "sag", tree / "sag_exported_again")
    _enhanced(tree / "enhanced" / "EMR0001.dcm", axial, template)
    _write(tree / "ct", axial, AXIAL, template, "CT HEAD", edit=lambda ds, i: setattr(ds, "Modality", "CT"))
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
    _write(tree / "anonymous", axial, AXIAL, template, "", edit=anonymous)
    _write(tree / "htj2k", axial, AXIAL, template, "T1 HTJ2K", edit=_to_htj2k)
    _write(tree / "deflated", axial, AXIAL, template, "T2 deflated",
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


def test_dcm2niix_that_finds_no_image_gives_a_reason(tmp_path, pydicom_mr) -> None:
    folder = tmp_path / "src" / "s"
    planes = [(np.array([0.0, 0.0, 4.0 * k]), np.zeros((8, 8), np.int16)) for k in range(3)]
    _write(folder, planes, AXIAL, pydicom_mr, "no pixels", edit=lambda ds, i: delattr(ds, "PixelData"))
    rels = [f"s/{p.name}" for p in sorted(folder.iterdir())]
    with pytest.raises(UnreadableImage, match="dcm2niix failed.*No valid DICOM images"):
        convert_series(tmp_path / "src", rels, tmp_path / "out", "x")
    assert not list((tmp_path / "out").glob("x*"))


def test_pick_output_prefers_corrected_stack_and_notes_a_real_choice(tmp_path) -> None:
    for name, size in (("x.nii.gz", 10), ("x_Tilt_1.nii.gz", 12), ("y_e1.nii.gz", 30), ("y_e2.nii.gz", 40)):
        (tmp_path / name).write_bytes(bytes(size))
    chosen, note = pick_output([tmp_path / "x.nii.gz", tmp_path / "x_Tilt_1.nii.gz"], "x")
    assert chosen.name == "x_Tilt_1.nii.gz" and note is None
    chosen, note = pick_output([tmp_path / "y_e1.nii.gz", tmp_path / "y_e2.nii.gz"], "y")
    assert chosen.name == "y_e2.nii.gz" and "2 images" in note and "not _e1" in note
    # Philips DWI (dcm2niix's dcm_qa_philips): the series itself, not its larger _ADC
    (tmp_path / "z.nii.gz").write_bytes(bytes(10))
    (tmp_path / "z_ADC.nii.gz").write_bytes(bytes(11))
    chosen, note = pick_output([tmp_path / "z.nii.gz", tmp_path / "z_ADC.nii.gz"], "z")
    assert chosen.name == "z.nii.gz" and "not _ADC" in note


def test_failure_reason_quotes_the_error_line_in_source_names() -> None:
    output = "Chris Rorden's dcm2niiX\nFound 2 DICOM file(s)\nError: cannot read /t/in/000001.dcm\nDone\n"
    reason = failure_reason(output, 1, {"/t/in/000001.dcm": "IMG/IM2"}, "1.2.840.10008.1.2.4.91")
    assert reason == ("dcm2niix failed (exit 1): Error: cannot read IMG/IM2 "
                      "[transfer syntax JPEG 2000 (1.2.840.10008.1.2.4.91)]")


def test_split_series_labels_only_what_varies() -> None:
    from curate.dicom import DicomFileHeader

    def header(n: int, echo: int, kind: str) -> DicomFileHeader:
        fields = (("EchoNumbers", float(echo)), ("ImageType", ("ORIGINAL", "PRIMARY", kind)))
        return DicomFileHeader(f"s/{n}", 1, 0, "1.2", None, fields)
    one = [header(i, 1, "M") for i in range(3)]
    assert split_series(one) == [(None, one)]
    echoes = [header(i, 1 + i % 2, "M") for i in range(4)]
    assert [(label, len(files)) for label, files in split_series(echoes)] == [("echo-1", 2), ("echo-2", 2)]
    parts = [header(i, 1, "M" if i < 2 else "P") for i in range(4)]
    assert [label for label, _ in split_series(parts)] == ["part-mag", "part-phase"]
    plain = (("EchoNumbers", 1.0), ("ImageType", ("ORIGINAL", "PRIMARY")))
    unlabelled = [DicomFileHeader(f"s/{i}", 1, 0, "1.2", None, plain)
                  for i in range(2)]
    assert [label for label, _ in split_series(one + unlabelled)] == [None]  # "M" and nothing: magnitude


def _slice(n: int, sop: str, z: float) -> "DicomFileHeader":
    from curate.dicom import DicomFileHeader

    fields = (("Rows", 64), ("Columns", 64), ("PixelSpacing", (4.0, 4.0)), ("Modality", "MR"),
              ("SeriesDescription", "T1 MPRAGE"), ("ImageOrientationPatient", (1.0, 0, 0, 0, 1.0, 0)),
              ("ImagePositionPatient", (0.0, 0.0, z)), ("InstanceNumber", float(n)), ("SOPInstanceUID", sop))
    return DicomFileHeader(f"s/{n:03d}", 100_000, 0, "1.2.3", None, fields)


def test_only_true_copies_of_an_instance_are_dropped() -> None:
    from curate.config import TriageConfig
    from curate.dicom import series_records

    series = [_slice(n, f"1.2.3.{n}", 4.0 * n) for n in range(20)]
    copies = [dataclasses.replace(h, rel_path="copy/" + h.rel_path) for h in series[:5]]
    (row,), _ = series_records("ds", series + copies, TriageConfig())
    assert row.shape == (64, 64, 20) and row.n_volumes == 1 and "5 duplicate file(s)" in row.warnings[0]
    # an anonymizer that gave every file one SOPInstanceUID: still 20 slices
    (row,), _ = series_records("ds", [_slice(n, "9.9", 4.0 * n) for n in range(20)], TriageConfig())
    assert row.shape == (64, 64, 20) and not row.warnings


def test_series_without_positions_or_with_mixed_pixel_spacing_is_unreadable() -> None:
    from curate.config import TriageConfig
    from curate.dicom import series_records

    no_positions = [dataclasses.replace(h, fields=tuple(f for f in h.fields if f[0] != "ImagePositionPatient"))
                    for h in (_slice(n, f"1.{n}", 4.0 * n) for n in range(20))]
    (row,), _ = series_records("ds", no_positions, TriageConfig())
    assert "unreadable" in row.exclusion_reasons and "slice geometry unknown" in row.exclusion_detail
    mixed = [_slice(n, f"1.{n}", 4.0 * n) for n in range(20)]
    mixed[7] = dataclasses.replace(mixed[7], fields=mixed[7].fields + (("PixelSpacing", (3.0, 3.0)),))
    (row,), _ = series_records("ds", mixed, TriageConfig())
    assert "inconsistent pixel spacing" in row.exclusion_detail


def test_files_with_empty_series_uid_are_grouped_by_folder_and_series_number(tmp_path, mni, pydicom_mr) -> None:
    tree = tmp_path / "export"
    planes = mni.planes(*AXIAL, n_slices=6)
    for folder, number in (("a", 3), ("b", 4)):
        _write(tree / folder, planes, AXIAL, pydicom_mr, "T1 SE", uid="",
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
    _write(tree / "s", planes[:16], AXIAL, pydicom_mr, "T1 SE", uid=uid)
    config = CurateConfig()
    config = dataclasses.replace(config, triage=dataclasses.replace(config.triage, min_file_size_bytes=20_000))
    options = pipeline.RunOptions(workers=1, source_kind=SourceKind.DICOM)
    (first,) = pipeline.build(tree, out, config, options).records
    _write(tree / "s", planes, AXIAL, pydicom_mr, "T1 SE", uid=uid)  # the rest of the series arrives
    (second,) = pipeline.build(tree, out, config, options).records
    assert first.shape == (N, N, 16) and second.shape == (N, N, SLICES)
    assert nib.load(str(out / second.converted_path)).shape == (N, N, SLICES)
    assert not (out / first.converted_path).exists()
    assert not [w for w in second.warnings if "differs from the DICOM headers" in w]


def test_dicom_files_without_preamble_or_extension_are_read(tmp_path, mni, pydicom_mr) -> None:
    from pydicom.dataset import FileMetaDataset

    tree = tmp_path / "export"
    _write(tree / "old", mni.planes(*AXIAL, n_slices=6), AXIAL, pydicom_mr, "T1 SE", names=lambda i: f"I{i}")
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
    _write(tree / "swi", planes + planes, AXIAL, pydicom_mr, "SWAN", edit=ge)
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


def test_converted_geometry_replaces_header_estimate_and_refuses_unexpected_volumes() -> None:
    from curate.io import ImageData
    from curate.stages.read import with_converted_geometry

    record = ImageRecord(image_id="x", dataset="d", source_kind="dicom", source_path="s", modality="T1w",
                         ndim=3, shape=(90, 100, 40), spacing_mm=(2.0, 2.0, 3.0), n_volumes=1)
    sagittal = ImageData(np.zeros((40, 90, 100), np.float32), np.eye(4), (3.0, 2.0, 2.0))
    row = with_converted_geometry(record, sagittal, dwi_source=False)
    assert row.shape == (40, 90, 100) and row.spacing_mm == (3.0, 2.0, 2.0) and not row.warnings
    assert row.fov_mm == (120.0, 180.0, 200.0)
    wider = ImageData(np.zeros((90, 116, 40), np.float32), np.eye(4), (2.0, 2.0, 3.0))
    assert "differs from the DICOM headers" in with_converted_geometry(record, wider, False).warnings[0]
    four_d = ImageData(np.zeros((90, 100, 20, 2), np.float32), np.eye(4), (2.0, 2.0, 3.0, 1.0))
    with pytest.raises(UnreadableImage, match="dcm2niix wrote 2 volumes"):
        with_converted_geometry(record, four_d, dwi_source=False)


def test_zero_orientation_is_unreadable_not_a_stack_of_volumes() -> None:
    from curate.dicom_geometry import series_geometry

    def header(z: float) -> "DicomFileHeader":
        return dataclasses.replace(_slice(int(z), f"1.{z}", z), fields=_slice(int(z), f"1.{z}", z).fields + (
            ("ImageOrientationPatient", (0.0,) * 6),))
    geometry, problems = series_geometry([header(4.0 * n) for n in range(10)])
    assert geometry["n_volumes"] == 1 and geometry["shape"] == (64, 64, 10)
    assert any("invalid ImageOrientationPatient" in p for p in problems)


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


def test_dcm2niix_that_hangs_is_stopped(tmp_path, monkeypatch, pydicom_mr) -> None:
    from curate import dicom_convert

    hang = tmp_path / "dcm2niix"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setattr(dicom_convert, "dcm2niix_binary", lambda: str(hang))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.dcm").write_bytes(pydicom_mr.read_bytes())
    with pytest.raises(UnreadableImage, match="did not finish within 0.5 s"):
        convert_series(tmp_path / "src", ["a.dcm"], tmp_path / "out", "x", timeout_s=0.5)


@pytest.mark.parametrize(("description", "modality"), [
    ("REST1 w SMS PF7-8", "BOLD"), ("rest_2", "BOLD"), ("Resting state", "BOLD"),
    ("T1 MPRAGE", "T1w"), ("t1_restore", "T1w"), ("DT_HIGH_32DIR", "DWI"), ("ep2d 64dirs", "DWI")])
def test_series_descriptions_seen_in_vendor_exports_get_their_modality(description, modality) -> None:
    """Siemens XA 'REST1' (dcm2niix's dcm_qa_enh) was T1w: the '1' after REST matched 't1';
    Philips 'DT_HIGH_32DIR' (dcm_qa_philips) was 'other', so its DWI maps were never made."""
    from curate.modality import load_rules, series_modality

    assert series_modality([description], None, load_rules()) == modality


def test_enhanced_series_of_one_file_per_volume_stacks_every_frame() -> None:
    """Siemens XA writes an fMRI run as one enhanced file per volume (dcm2niix's dcm_qa_enh)."""
    from curate.dicom import DicomFileHeader
    from curate.dicom_geometry import series_geometry

    frames = tuple((-110.0, -58.5, -5.4 + 2.4 * k) for k in range(6))
    fields = (("Rows", 64), ("Columns", 64), ("NumberOfFrames", 6.0), ("PixelSpacing", (3.375, 3.375)),
              ("ImageOrientationPatient", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)), ("FramePositions", frames))
    files = [DicomFileHeader(f"6_{v}.dcm", 147_000, 0, "1.2", None, fields) for v in range(1, 5)]
    geometry, problems = series_geometry(files)
    assert problems == [] and geometry["shape"] == (64, 64, 6, 4)
    assert geometry["spacing_mm"] == pytest.approx((3.375, 3.375, 2.4))


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
        _enhanced(path, planes, pydicom_mr)
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


def test_colour_nifti_is_unreadable_with_a_reason_not_a_stage_failure(tmp_path) -> None:
    """dcm2niix writes Siemens' colour FA series as RGB24 (dcm2niix's dcm_qa_xa30)."""
    from curate.io import read_image

    rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "colfa.nii.gz")
    with pytest.raises(UnreadableImage, match="colour image"):
        read_image(tmp_path / "colfa.nii.gz")


def test_scanner_derived_diffusion_maps_are_no_dwi_source() -> None:
    from curate.stages.base import is_dwi_source

    source = ImageRecord(image_id="a", dataset="d", source_kind="dicom", source_path="dwi", modality="DWI",
                         exclusion_reasons=("modality",), image_type=("ORIGINAL", "PRIMARY", "DIFFUSION"))
    assert is_dwi_source(source)
    assert not is_dwi_source(dataclasses.replace(source, image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC")))
