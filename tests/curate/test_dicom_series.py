"""DICOM series from headers: grouping, splits, copies, geometry; dcm2niix outputs and failures.

Pure functions on header records and small files; the builds of whole odd
exports are in ``test_dicom_exports.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from curate.config import TriageConfig
from curate.dicom import DicomFileHeader, series_records, split_series
from curate.dicom_convert import convert_series, failure_reason, pick_output
from curate.io import UnreadableImage
from manifests.schema import ImageRecord
from tests.curate.dicom_factory import AXIAL, header_slice, write_series


def test_dcm2niix_that_finds_no_image_gives_a_reason(tmp_path, pydicom_mr) -> None:
    folder = tmp_path / "src" / "s"
    planes = [(np.array([0.0, 0.0, 4.0 * k]), np.zeros((8, 8), np.int16)) for k in range(3)]
    write_series(folder, planes, AXIAL, pydicom_mr, "no pixels", edit=lambda ds, i: delattr(ds, "PixelData"))
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


def test_only_true_copies_of_an_instance_are_dropped() -> None:
    series = [header_slice(n, f"1.2.3.{n}", 4.0 * n) for n in range(20)]
    copies = [dataclasses.replace(h, rel_path="copy/" + h.rel_path) for h in series[:5]]
    (row,), _ = series_records("ds", series + copies, TriageConfig())
    assert row.shape == (64, 64, 20) and row.n_volumes == 1 and "5 duplicate file(s)" in row.warnings[0]
    # an anonymizer that gave every file one SOPInstanceUID: still 20 slices
    (row,), _ = series_records("ds", [header_slice(n, "9.9", 4.0 * n) for n in range(20)], TriageConfig())
    assert row.shape == (64, 64, 20) and not row.warnings


def test_series_without_positions_or_with_mixed_pixel_spacing_is_unreadable() -> None:
    no_positions = [dataclasses.replace(h, fields=tuple(f for f in h.fields if f[0] != "ImagePositionPatient"))
                    for h in (header_slice(n, f"1.{n}", 4.0 * n) for n in range(20))]
    (row,), _ = series_records("ds", no_positions, TriageConfig())
    assert "unreadable" in row.exclusion_reasons and "slice geometry unknown" in row.exclusion_detail
    mixed = [header_slice(n, f"1.{n}", 4.0 * n) for n in range(20)]
    mixed[7] = dataclasses.replace(mixed[7], fields=mixed[7].fields + (("PixelSpacing", (3.0, 3.0)),))
    (row,), _ = series_records("ds", mixed, TriageConfig())
    assert "inconsistent pixel spacing" in row.exclusion_detail


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
        return dataclasses.replace(header_slice(int(z), f"1.{z}", z), fields=header_slice(int(z), f"1.{z}", z).fields + (
            ("ImageOrientationPatient", (0.0,) * 6),))
    geometry, problems = series_geometry([header(4.0 * n) for n in range(10)])
    assert geometry["n_volumes"] == 1 and geometry["shape"] == (64, 64, 10)
    assert any("invalid ImageOrientationPatient" in p for p in problems)


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
    from curate.dicom_geometry import series_geometry

    frames = tuple((-110.0, -58.5, -5.4 + 2.4 * k) for k in range(6))
    fields = (("Rows", 64), ("Columns", 64), ("NumberOfFrames", 6.0), ("PixelSpacing", (3.375, 3.375)),
              ("ImageOrientationPatient", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)), ("FramePositions", frames))
    files = [DicomFileHeader(f"6_{v}.dcm", 147_000, 0, "1.2", None, fields) for v in range(1, 5)]
    geometry, problems = series_geometry(files)
    assert problems == [] and geometry["shape"] == (64, 64, 6, 4)
    assert geometry["spacing_mm"] == pytest.approx((3.375, 3.375, 2.4))


def test_scanner_derived_diffusion_maps_are_no_dwi_source() -> None:
    from curate.stages.base import is_dwi_source

    source = ImageRecord(image_id="a", dataset="d", source_kind="dicom", source_path="dwi", modality="DWI",
                         exclusion_reasons=("modality",), image_type=("ORIGINAL", "PRIMARY", "DIFFUSION"))
    assert is_dwi_source(source)
    assert not is_dwi_source(dataclasses.replace(source, image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC")))


@pytest.mark.parametrize(("matrix", "size"), [((90, 0, 0, 45), (720, 720)), ((90, 0, 0, 180), (720, 1440))])
def test_siemens_mosaic_tiles_follow_the_square_grid_not_the_acquisition_matrix(matrix, size) -> None:
    """Reduced phase resolution or FOV (dcm2niix's dcm_qa TotalReadoutTime set): tiles are 720/8 wide."""
    from curate.dicom_geometry import series_geometry

    fields = (("Rows", size[0]), ("Columns", size[1]), ("AcquisitionMatrix", matrix), ("MosaicImages", 60),
              ("ImageType", ("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC")), ("PixelSpacing", (2.4, 2.4)),
              ("SliceThickness", 2.4))
    geometry, problems = series_geometry([DicomFileHeader("m.IMA", 1, 0, "1.2", None, fields)])
    assert geometry["shape"] == (size[1] // 8, size[0] // 8, 60) and problems == []
