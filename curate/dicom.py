"""DICOM trees: per-file headers (pydicom), grouping into series, conversion (dcm2niix).

One image per SeriesInstanceUID, or per part of a series that holds several
images (echoes, magnitude/phase; :func:`split_series`).  Headers are read with
``stop_before_pixels`` and a short tag list; geometry checks (missing
slices, mixed orientations, inconsistent matrix sizes) are made from the
headers alone.  Conversion to NIfTI is left to dcm2niix, the converter the
field trusts, and happens once per series during ``curate build``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from manifests.schema import ExclusionReason, ImageRecord, Modality, SourceKind, make_image_id

from curate.config import TriageConfig
from curate.dicom_convert import Conversion, convert_series, dcm2niix_binary
from curate.dicom_deflate import is_deflated, read_deflated_header
from curate.dicom_geometry import PRIVATE_TAGS, PYDICOM_ERRORS, header_fields, series_geometry
from curate.discover import DICOM_SUFFIXES, display_path
from curate.modality import IMAGE_PARTS, image_part, is_derived_series, load_rules, series_modality
from curate.triage import triage

_TAGS = [
    "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "StudyDate", "Modality", "Rows",
    "Columns", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames", "InstanceNumber",
    "SeriesDescription", "ProtocolName", "ImageType", "Manufacturer",
    "ManufacturerModelName", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
    "InPlanePhaseEncodingDirection", "PatientAge", "PatientSex", "SOPInstanceUID", "EchoNumbers",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "SeriesNumber", "SOPClassUID",
    "AcquisitionMatrix",
]
#: What pydicom reads of each file: the keywords above and the vendors' private tags.
_READ_TAGS: list[Any] = [*_TAGS, *PRIVATE_TAGS]


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


def _starts_like_a_data_set(path: Path) -> bool:
    """True for a file that opens with a little-endian group 0002 or 0008 element.

    Older exports (and some anonymizers) write DICOM without the 128-byte
    preamble and ``DICM``, often with no file extension either; pydicom reads
    such files only when forced.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] != b"DICM" and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def _read(path: Path, named_dicom: bool) -> pydicom.Dataset:
    """The header tags of one file; a file not named DICOM is forced only when it looks like one.

    A deflated file is inflated only as far as its header (:mod:`curate.dicom_deflate`):
    pydicom would inflate all of it in memory.
    """
    if is_deflated(path):
        return read_deflated_header(path, stop_before_pixels=True, specific_tags=_READ_TAGS)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_READ_TAGS, force=named_dicom)
    except InvalidDicomError:
        if named_dicom or not _starts_like_a_data_set(path):
            raise
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_READ_TAGS, force=True)


def read_file_header(root: Path, rel_path: str) -> DicomFileHeader | None:
    """Header of one file; ``None`` for a file that is not DICOM (and not named so)."""
    path = root / rel_path
    try:
        stat = os.stat(path)
    except OSError as exc:
        return DicomFileHeader(rel_path, 0, 0, error=f"cannot stat file: {exc.strerror}")
    named_dicom = rel_path.lower().endswith(DICOM_SUFFIXES)
    try:
        ds = _read(path, named_dicom)
        uid = ds.get("SeriesInstanceUID")
        if uid is None:
            raise InvalidDicomError("no SeriesInstanceUID (not an image, or a header cut short)")
        fields = header_fields(ds, _TAGS)
    except PYDICOM_ERRORS as exc:
        if not named_dicom:
            return None
        return DicomFileHeader(rel_path, stat.st_size, stat.st_mtime_ns,
                               error=f"DICOM header: {type(exc).__name__}: {exc}")
    series = str(uid).strip() or _NO_UID + "\x1f".join(
        [os.path.dirname(rel_path), str(ds.get("SeriesNumber", "")), str(ds.get("SeriesDescription", ""))])
    return DicomFileHeader(rel_path, stat.st_size, stat.st_mtime_ns, series, None, fields)


#: Series key prefix of files whose SeriesInstanceUID is empty (some anonymizers blank it):
#: such files are grouped by folder, SeriesNumber and SeriesDescription instead.
_NO_UID = "no-uid\x1f"


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
    """Group file headers into one record per image; also return each image's files.

    An image is a series, or one part of a series that holds several images
    (echoes, magnitude and phase, original and derived slices; see
    :func:`split_series`).  Copies of one instance (same SOPInstanceUID) count once.
    """
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
    for uid, everything in sorted(by_series.items()):
        unique, copies = _unique_instances(everything)
        for label, members in split_series(unique):
            members.sort(key=lambda f: (_number(f.get("InstanceNumber"), int) or 0, f.rel_path))
            try:
                record = _series_record(dataset, uid, label, members, config, rules)
            except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
                # A header value that makes no sense (an IS of "1A", a 2-value orientation):
                # the series gets a row saying so instead of failing the whole index.
                record = _unreadable_series(dataset, uid, label, members, config,
                                            f"DICOM header values: {type(exc).__name__}: {exc}")
            if copies:
                record = record.with_warning(f"{copies} duplicate file(s) of the same instances "
                                             f"(SOPInstanceUID) ignored, e.g. "
                                             f"{_copies_example(everything, unique)}")
            series_files[record.image_id] = [m.rel_path for m in members]
            records.append(record)
    return records, series_files


def _unique_instances(members: list[DicomFileHeader]) -> tuple[list[DicomFileHeader], int]:
    """The files of a series with copies of one instance (same SOPInstanceUID) dropped.

    Exports often hold an instance twice (a study exported into two folders);
    counted twice, its slices would look like a second volume.
    """
    seen: set[tuple[Any, ...]] = set()
    kept: list[DicomFileHeader] = []
    for header in sorted(members, key=lambda f: f.rel_path):
        # A copy has the same UID *and* the same slice: an anonymizer that gave every
        # file one SOPInstanceUID must not collapse a series to one slice.
        key = tuple(header.get(k) for k in ("SOPInstanceUID", "ImagePositionPatient", "InstanceNumber",
                                            "EchoNumbers", "NumberOfFrames"))
        if key[0] is not None and key in seen:
            continue
        seen.add(key)
        kept.append(header)
    return kept, len(members) - len(kept)


def _copies_example(everything: list[DicomFileHeader], kept: list[DicomFileHeader]) -> str:
    """One ignored copy, by path."""
    kept_paths = {k.rel_path for k in kept}
    return next(f.rel_path for f in sorted(everything, key=lambda f: f.rel_path)
                if f.rel_path not in kept_paths)


def _part_of(header: DicomFileHeader) -> str:
    """The image part of one file, from its ImageType or the vendor's private mark (GE)."""
    return image_part(header.get("ImageType")) or IMAGE_PARTS.get(header.get("VendorImagePart") or "", "")


def _split_key(header: DicomFileHeader) -> tuple[float, str, str]:
    """(echo, part, original-or-derived) of one file.

    The echo is EchoNumbers, or the echo time where EchoNumbers is absent
    (enhanced objects keep it per frame; dcm2niix splits on either).
    """
    raw = header.get("ImageType")
    types = [str(t).upper() for t in (raw if isinstance(raw, tuple) else (raw,) if raw else ())]
    # Only phase, real and imaginary parts split a series: files that say "M" and
    # files that say nothing are both magnitude (DWI b0 and b>0 images may differ so).
    part = _part_of(header)
    part = part if part in ("phase", "real", "imag") else "mag"
    kind = "derived" if types and types[0] in ("DERIVED", "SECONDARY") else ""
    echo = header.get("EchoNumbers")
    echo = echo[0] if isinstance(echo, tuple) and echo else echo
    number = _number(echo)
    if number is None:
        time = _number(header.get("EchoTime"))
        number = None if time is None else 1000.0 + time  # after any EchoNumbers
    return (-1.0 if number is None else number, part, kind)


def split_series(members: list[DicomFileHeader]) -> list[tuple[str | None, list[DicomFileHeader]]]:
    """The images in one series: ``[(label, files)]``, label ``None`` when it is one image.

    A series whose files differ in EchoNumbers or echo time (multi-echo), in the magnitude /
    phase / real / imaginary value of ImageType, or in ORIGINAL / DERIVED
    (Philips puts the ADC map in the DWI series) holds several images; dcm2niix
    would write each to its own file (``_e2``, ``_ph``, ``_ADC``).  Each becomes a
    row of its own, labelled e.g. ``echo-2`` (the echo's rank) or ``part-phase``
    (the BIDS entities) in the row's ``acquisition`` column.
    """
    groups: dict[tuple[float, str, str], list[DicomFileHeader]] = defaultdict(list)
    for header in members:
        groups[_split_key(header)].append(header)
    if len(groups) == 1:
        return [(None, members)]
    varies = [len({key[i] for key in groups}) > 1 for i in range(3)]
    echoes = sorted({key[0] for key in groups if key[0] >= 0})
    out = []
    for (echo, part, kind), files in sorted(groups.items()):
        words = [f"echo-{echoes.index(echo) + 1 if echo >= 0 else 'none'}" if varies[0] else "",
                 f"part-{part or 'none'}" if varies[1] else "",
                 (kind or "original") if varies[2] else ""]
        out.append(("_".join(w for w in words if w), files))
    return out


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


def _unreadable_series(dataset: str, uid: str, label: str | None, members: list[DicomFileHeader],
                       config: TriageConfig, detail: str) -> ImageRecord:
    """The row of a series whose headers cannot be interpreted."""
    return triage(ImageRecord(
        image_id=make_image_id(dataset, "dicom", uid, *([label] if label else [])), dataset=dataset,
        source_kind=SourceKind.DICOM.value, source_path=display_path(_series_folder(members)),
        modality=Modality.OTHER.value, acquisition=label,
        series_instance_uid=None if uid.startswith(_NO_UID) else uid,
        file_size_bytes=sum(m.size for m in members), source_mtime_ns=max(m.mtime_ns for m in members),
    ).excluded_for(ExclusionReason.UNREADABLE.value, detail=detail), config)


def _modality(dicom_modality: Any, meta: dict[str, Any], rules: Any) -> str:
    if dicom_modality == "PT":
        return Modality.PET.value
    if dicom_modality == "MR":
        return series_modality([meta["series_description"], meta["protocol_name"]],
                               meta["image_type"], rules)
    return Modality.OTHER.value


def _series_record(dataset: str, uid: str, label: str | None, members: list[DicomFileHeader],
                   config: TriageConfig, rules: Any) -> ImageRecord:
    first = members[0]
    meta = _metadata(first)
    dicom_modality = first.get("Modality")
    geometry, problems = series_geometry(members)
    subject = str(first.get("PatientID") or "").strip() or None
    record = ImageRecord(
        image_id=make_image_id(dataset, "dicom", uid, *([label] if label else [])), dataset=dataset,
        source_kind=SourceKind.DICOM.value, source_path=display_path(_series_folder(members)),
        modality=_modality(dicom_modality, meta, rules), subject=subject,
        session=first.get("StudyDate"), acquisition=label, included=True,
        series_instance_uid=None if uid.startswith(_NO_UID) else uid,
        file_size_bytes=sum(m.size for m in members),
        source_mtime_ns=max(m.mtime_ns for m in members), **meta, **geometry,
    )
    if uid.startswith(_NO_UID):
        record = record.with_warning("empty SeriesInstanceUID: files grouped by folder, SeriesNumber "
                                     "and SeriesDescription")
    if not geometry:
        # SR, RTSTRUCT, spectroscopy, vendors' non-image objects: no Rows/Columns, not images.
        sop = first.get("SOPClassUID")
        return triage(record.excluded_for(ExclusionReason.MODALITY.value, detail=(
            f"DICOM {dicom_modality or 'object'} with no image data" + (f" (SOP class {sop})" if sop else ""))),
            config)
    if dicom_modality not in ("MR", "PT"):
        # CT, NM, RTDOSE ...: their geometry does not matter, their modality says why they go.
        return triage(record.excluded_for(ExclusionReason.MODALITY.value, detail=(
            f"DICOM {dicom_modality or 'image without Modality'} image (not MR or PET)")), config)
    if problems:
        record = record.excluded_for(ExclusionReason.UNREADABLE.value, detail="; ".join(problems))
    if config.exclude_derived_dicom_series and is_derived_series(meta["image_type"], rules):
        record = record.excluded_for(ExclusionReason.MODALITY.value,
                                     detail=f"derived series (ImageType {meta['image_type']})")
    elif _part_of(first) in ("phase", "real", "imag"):
        record = record.excluded_for(ExclusionReason.MODALITY.value, detail=(
            f"{_part_of(first)} image, not magnitude (ImageType {meta['image_type']})"))
    return triage(record, config)


__all__ = ["Conversion", "DicomFileHeader", "convert_series", "dcm2niix_binary", "read_file_header",
           "read_headers_batch", "series_records", "split_series"]
