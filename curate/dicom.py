"""DICOM trees: per-file headers (pydicom), grouping into series, conversion (dcm2niix).

One image per SeriesInstanceUID.  Headers are read with
``stop_before_pixels`` and a short tag list; geometry checks (missing
slices, mixed orientations, inconsistent matrix sizes) are made from the
headers alone.  Conversion to NIfTI is left to dcm2niix, the converter the
field trusts, and happens once per series during ``curate build``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from manifests.schema import ExclusionReason, ImageRecord, Modality, SourceKind, make_image_id

from curate.config import TriageConfig
from curate.discover import DICOM_SUFFIXES, display_path
from curate.io import UnreadableImage
from curate.modality import is_derived_series, load_rules, series_modality
from curate.triage import triage

_TAGS = [
    "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "StudyDate", "Modality", "Rows",
    "Columns", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames", "InstanceNumber",
    "SeriesDescription", "ProtocolName", "ImageType", "Manufacturer",
    "ManufacturerModelName", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
    "InPlanePhaseEncodingDirection", "PatientAge", "PatientSex",
]


@dataclass(frozen=True, slots=True)
class DicomFileHeader:
    """The header fields of one DICOM file that indexing needs."""

    rel_path: str
    size: int
    mtime_ns: int
    series_uid: str | None = None
    error: str | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        """A header field by DICOM keyword, or ``None``."""
        return dict(self.fields).get(name)


def _plain(value: Any) -> Any:
    if isinstance(value, pydicom.multival.MultiValue) or isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    return None if value is None else str(value)


def read_file_header(root: Path, rel_path: str) -> DicomFileHeader | None:
    """Header of one file; ``None`` for a file that is not DICOM (and not named so)."""
    path = root / rel_path
    try:
        stat = os.stat(path)
    except OSError as exc:
        return DicomFileHeader(rel_path, 0, 0, error=f"cannot stat file: {exc.strerror}")
    named_dicom = rel_path.lower().endswith(DICOM_SUFFIXES)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS, force=named_dicom)
        uid = ds.get("SeriesInstanceUID")
        if uid is None:
            raise InvalidDicomError("no SeriesInstanceUID")
        fields = tuple((tag, _plain(ds.get(tag))) for tag in _TAGS if ds.get(tag) is not None)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError) as exc:
        if not named_dicom:
            return None
        return DicomFileHeader(rel_path, stat.st_size, stat.st_mtime_ns,
                               error=f"DICOM header: {type(exc).__name__}: {exc}")
    return DicomFileHeader(rel_path, stat.st_size, stat.st_mtime_ns, str(uid), None, fields)


def read_headers_batch(rel_paths: list[str], root: str) -> list[DicomFileHeader]:
    """Headers of a batch of files (the unit of one Dask task); non-DICOM files dropped.

    pydicom's warnings about non-conforming values (an IS of "1A", implicit VR
    where explicit was declared) are silenced: exports are full of them and the
    values that matter are checked when the series is assembled.
    """
    out = []
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for rel in rel_paths:
                header = read_file_header(Path(root), rel)
                if header is not None:
                    out.append(header)
    finally:
        logger.setLevel(level)
    return out


def _geometry(files: list[DicomFileHeader]) -> tuple[dict[str, Any], list[str]]:
    """Shape, spacing and FOV of a series, and what is wrong with its geometry."""
    problems: list[str] = []
    first = files[0]
    rows, cols = first.get("Rows"), first.get("Columns")
    if rows is None or cols is None:
        return {}, ["no Rows/Columns"]
    if len({(f.get("Rows"), f.get("Columns")) for f in files}) > 1:
        problems.append("inconsistent matrix sizes")
    orientations = {tuple(round(v, 3) for v in (f.get("ImageOrientationPatient") or ()))
                    for f in files}
    if len(orientations) > 1:
        problems.append("mixed slice orientations")
    spacing_xy = first.get("PixelSpacing") or (1.0, 1.0)
    frames = int(first.get("NumberOfFrames") or 1)
    n_slices = frames if len(files) == 1 else len(files)
    slice_spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    orient = first.get("ImageOrientationPatient")
    positions = [f.get("ImagePositionPatient") for f in files]
    n_volumes = 1
    if len(files) > 1 and orient and len(orientations) == 1 and all(p for p in positions):
        normal = np.cross(np.asarray(orient[:3], float), np.asarray(orient[3:6], float))
        depth, counts = np.unique(np.round(np.asarray(positions, float) @ normal, 3), return_counts=True)
        if counts.min() != counts.max():
            problems.append("duplicated slice positions")
        else:
            # Every position the same number of times: one slice per volume of a
            # multi-volume series (DWI, BOLD), as dcm2niix stacks them.
            n_volumes, n_slices = int(counts[0]), int(depth.size)
        gaps = np.diff(depth)
        if gaps.size:
            slice_spacing = float(np.median(gaps))
            if gaps.max() > 1.5 * slice_spacing:
                problems.append(f"missing slices (gap of {gaps.max():.2f} mm, "
                                f"spacing {slice_spacing:.2f} mm)")
    shape = (int(cols), int(rows), int(n_slices))
    spacing = (float(spacing_xy[1]), float(spacing_xy[0]), abs(slice_spacing))
    return {
        "ndim": 3 if n_volumes == 1 else 4,
        "shape": shape if n_volumes == 1 else (*shape, n_volumes),
        "spacing_mm": spacing, "n_volumes": n_volumes,
        "fov_mm": tuple(s * z for s, z in zip(shape, spacing)),
    }, problems


def _metadata(first: DicomFileHeader) -> dict[str, Any]:
    def num(name: str, scale: float = 1.0) -> float | None:
        value = first.get(name)
        return float(value) * scale if isinstance(value, (int, float)) else None

    image_type = first.get("ImageType")
    age = first.get("PatientAge")
    age_years = float(age[:-1]) if isinstance(age, str) and age[:-1].isdigit() and age.endswith("Y") else None
    sex = first.get("PatientSex")
    return {
        "manufacturer": first.get("Manufacturer"),
        "manufacturer_model": first.get("ManufacturerModelName"),
        "field_strength_t": num("MagneticFieldStrength"),
        "repetition_time_s": num("RepetitionTime", 1e-3),
        "echo_time_s": num("EchoTime", 1e-3),
        "phase_encoding_direction": first.get("InPlanePhaseEncodingDirection"),
        "series_description": first.get("SeriesDescription"),
        "protocol_name": first.get("ProtocolName"),
        "image_type": tuple(image_type) if isinstance(image_type, tuple) else
        ((image_type,) if image_type else None),
        "age": age_years,
        "sex": sex if sex in ("M", "F", "O") else None,
    }


def series_records(dataset: str, files: list[DicomFileHeader], config: TriageConfig,
                   ) -> tuple[list[ImageRecord], dict[str, list[str]]]:
    """Group file headers into one record per series; also return each series' files."""
    rules = load_rules()
    by_series: dict[str, list[DicomFileHeader]] = defaultdict(list)
    records: list[ImageRecord] = []
    for header in files:
        if header.error is not None:
            records.append(triage(ImageRecord(
                image_id=make_image_id(dataset, "dicom-file", header.rel_path), dataset=dataset,
                source_kind=SourceKind.DICOM.value, source_path=display_path(header.rel_path),
                modality=Modality.OTHER.value, file_size_bytes=header.size,
                source_mtime_ns=header.mtime_ns,
            ).excluded_for(ExclusionReason.UNREADABLE.value, detail=header.error), config))
        else:
            by_series[header.series_uid or ""].append(header)
    series_files: dict[str, list[str]] = {}
    for uid, members in sorted(by_series.items()):
        members.sort(key=lambda f: (_number(f.get("InstanceNumber"), int) or 0, f.rel_path))
        try:
            record = _series_record(dataset, uid, members, config, rules)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            # A header value that makes no sense (an IS of "1A", a 2-value orientation):
            # the series gets a row saying so instead of failing the whole index.
            record = _unreadable_series(dataset, uid, members, config,
                                        f"DICOM header values: {type(exc).__name__}: {exc}")
        series_files[record.image_id] = [m.rel_path for m in members]
        records.append(record)
    return records, series_files


def _number(value: Any, kind: type = float) -> Any:
    """``kind(value)``, or ``None`` for a missing or malformed header value."""
    try:
        return kind(value) if value is not None else None
    except (ValueError, TypeError):
        return None


def _series_folder(members: list[DicomFileHeader]) -> str:
    """A series is named by its folder, or by its file when it is a single file."""
    if len(members) == 1:
        return members[0].rel_path
    return os.path.commonpath([os.path.dirname(m.rel_path) for m in members]) or "."


def _unreadable_series(dataset: str, uid: str, members: list[DicomFileHeader], config: TriageConfig,
                       detail: str) -> ImageRecord:
    """The row of a series whose headers cannot be interpreted."""
    return triage(ImageRecord(
        image_id=make_image_id(dataset, "dicom", uid), dataset=dataset,
        source_kind=SourceKind.DICOM.value, source_path=display_path(_series_folder(members)),
        modality=Modality.OTHER.value, series_instance_uid=uid,
        file_size_bytes=sum(m.size for m in members), source_mtime_ns=max(m.mtime_ns for m in members),
    ).excluded_for(ExclusionReason.UNREADABLE.value, detail=detail), config)


def _series_record(dataset: str, uid: str, members: list[DicomFileHeader],
                   config: TriageConfig, rules: Any) -> ImageRecord:
    first = members[0]
    meta = _metadata(first)
    folder = _series_folder(members)
    dicom_modality = first.get("Modality")
    if dicom_modality == "PT":
        modality = Modality.PET.value
    elif dicom_modality == "MR":
        modality = series_modality([meta["series_description"], meta["protocol_name"]],
                                   meta["image_type"], rules)
    else:
        modality = Modality.OTHER.value
    geometry, problems = _geometry(members)
    record = ImageRecord(
        image_id=make_image_id(dataset, "dicom", uid), dataset=dataset,
        source_kind=SourceKind.DICOM.value, source_path=display_path(folder),
        modality=modality, subject=first.get("PatientID"), session=first.get("StudyDate"),
        series_instance_uid=uid, included=True,
        file_size_bytes=sum(m.size for m in members),
        source_mtime_ns=max(m.mtime_ns for m in members), **meta, **geometry,
    )
    if problems:
        record = record.excluded_for(ExclusionReason.UNREADABLE.value, detail="; ".join(problems))
    if config.exclude_derived_dicom_series and is_derived_series(meta["image_type"], rules):
        record = record.excluded_for(ExclusionReason.MODALITY.value,
                                     detail=f"derived series (ImageType {meta['image_type']})")
    return triage(record, config)


def dcm2niix_binary() -> str:
    """Path of the dcm2niix executable shipped by the ``dcm2niix`` wheel (or on PATH)."""
    try:
        import dcm2niix

        if Path(dcm2niix.bin).exists():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found is None:
        raise UnreadableImage("dcm2niix is not installed")
    return found


def convert_series(root: Path, rel_files: list[str], out_dir: Path, name: str) -> Path:
    """Convert one series with dcm2niix into ``out_dir/name.nii.gz`` (+ json/bval/bvec).

    The series' files are linked into a private folder first, so other series
    in the same directory are not converted with it.  Outputs appear atomically.

    Raises
    ------
    UnreadableImage
        If dcm2niix fails or writes no image.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
        src = Path(tmp) / "in"
        dst = Path(tmp) / "out"
        src.mkdir()
        dst.mkdir()
        for i, rel in enumerate(rel_files):
            os.symlink((root / rel).resolve(), src / f"{i:06d}.dcm")
        proc = subprocess.run(
            [dcm2niix_binary(), "-z", "y", "-b", "y", "-ba", "y", "-f", name, "-o", str(dst),
             str(src)], capture_output=True, text=True, errors="replace", check=False,
        )
        images = sorted(dst.glob("*.nii.gz"), key=lambda p: p.stat().st_size, reverse=True)
        if proc.returncode != 0 or not images:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise UnreadableImage(f"dcm2niix failed (exit {proc.returncode}): {tail[0]}")
        main = images[0]
        stem = main.name[: -len(".nii.gz")]
        for produced in dst.glob(stem + ".*"):
            suffix = produced.name[len(stem):]
            os.replace(produced, out_dir / f"{name}{suffix}")
    return out_dir / f"{name}.nii.gz"
