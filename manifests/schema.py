"""The manifest row: one typed record per image and the Arrow schema beside it.

Every image that discovery finds becomes exactly one :class:`ImageRecord`,
included or not.  Derived images (DWI maps) are rows of their own that point
back at their source through ``derived_from``.  The Arrow schema
:data:`ARROW_SCHEMA` is written by hand next to the dataclass so that the
Parquet types are explicit; ``tests/manifests/test_schema.py`` checks that the
two agree field by field.

Paths: ``source_path`` is relative to SOURCE; every output path
(``converted_path``, ``derived_path``, ``anon_mask_path``, ``anatomy_mask_path``,
``array_path``) is relative to OUTPUT.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import operator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1"


class Modality(str, enum.Enum):
    """Image modality, grouped as in OpenMind."""

    T1W = "T1w"
    T2W = "T2w"
    FLAIR = "FLAIR"
    PDW = "PDw"
    T2STARW = "T2starw"
    MP2RAGE = "MP2RAGE"
    UNIT1 = "UNIT1"
    ANGIO = "angio"
    SWI = "SWI"
    PET = "PET"
    FA = "FA"
    MD = "MD"
    # OpenMind's smaller groups (its Table 10): BIDS anatomical suffixes and
    # maps that datasets ship as raw images.
    INPLANE_T1 = "inplaneT1"
    INPLANE_T2 = "inplaneT2"
    FLASH = "FLASH"
    T1MAP = "T1map"
    T2MAP = "T2map"
    T2STARMAP = "T2starmap"
    SBREF = "sbref"
    MINIP = "minIP"
    ADC = "ADC"
    TRACE = "TRACE"
    DWI = "DWI"
    BOLD = "BOLD"
    LOCALIZER = "localizer"
    OTHER = "other"


#: Modalities that are pre-training images when they pass triage.
PRETRAINING_MODALITIES: frozenset[str] = frozenset(
    m.value
    for m in (
        Modality.T1W, Modality.T2W, Modality.FLAIR, Modality.PDW, Modality.T2STARW,
        Modality.MP2RAGE, Modality.UNIT1, Modality.ANGIO, Modality.SWI, Modality.PET,
        Modality.FA, Modality.MD, Modality.INPLANE_T1, Modality.INPLANE_T2, Modality.FLASH,
        Modality.T1MAP, Modality.T2MAP, Modality.T2STARMAP, Modality.SBREF, Modality.MINIP,
        Modality.ADC, Modality.TRACE,
    )
)


class ExclusionReason(str, enum.Enum):
    """The one vocabulary of exclusion reasons."""

    FOV = "fov"
    SPACING = "spacing"
    SIZE = "size"
    UNREADABLE = "unreadable"
    EMPTY = "empty"
    MODALITY = "modality"
    GRADIENTS = "gradients"
    IQS = "iqs"


class SourceKind(str, enum.Enum):
    """How the source collection is laid out."""

    BIDS = "bids"
    DICOM = "dicom"
    NIFTI = "nifti"


class Anonymization(str, enum.Enum):
    """What anonymization an image went through before release."""

    NONE = "none"
    DEFACED = "defaced"
    FACE_BLURRED = "face_blurred"
    SKULL_STRIPPED = "skull_stripped"


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One manifest row.  Optional fields are ``None`` until a stage fills them."""

    # identity
    image_id: str
    dataset: str
    source_kind: str
    source_path: str
    modality: str
    subject: str | None = None
    session: str | None = None
    run: str | None = None
    acquisition: str | None = None
    suffix: str | None = None
    derived_from: str | None = None
    # triage
    included: bool = False
    exclusion_reasons: tuple[str, ...] = ()
    exclusion_detail: str | None = None
    warnings: tuple[str, ...] = ()
    # header
    ndim: int | None = None
    shape: tuple[int, ...] | None = None
    spacing_mm: tuple[float, ...] | None = None
    fov_mm: tuple[float, ...] | None = None
    n_volumes: int | None = None
    dtype: str | None = None
    file_size_bytes: int | None = None
    source_mtime_ns: int | None = None
    # participant metadata (participants.tsv); all columns kept as JSON too
    age: float | None = None
    sex: str | None = None
    participant_json: str | None = None
    # acquisition metadata (sidecar JSON or DICOM)
    manufacturer: str | None = None
    manufacturer_model: str | None = None
    field_strength_t: float | None = None
    repetition_time_s: float | None = None
    echo_time_s: float | None = None
    phase_encoding_direction: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    image_type: tuple[str, ...] | None = None
    series_instance_uid: str | None = None
    # DWI source files (relative to SOURCE) and derivation QC
    bval_path: str | None = None
    bvec_path: str | None = None
    dwi_shells: tuple[float, ...] | None = None
    dwi_nan_voxels: int | None = None
    dwi_degenerate_voxels: int | None = None
    dwi_motion_max_mm: float | None = None
    dwi_motion_mean_mm: float | None = None
    # image quality
    iqs: float | None = None
    iqs_noise: float | None = None
    iqs_blur: float | None = None
    iqs_artifact: float | None = None
    fov_suboptimal: bool | None = None
    corrupted: bool | None = None
    iqs_group: float | None = None
    iqs_source: str | None = None
    qc_noise_sigma: float | None = None
    qc_snr: float | None = None
    qc_snr_dietrich: float | None = None
    qc_cnr: float | None = None
    qc_cjv: float | None = None
    qc_efc: float | None = None
    qc_fber: float | None = None
    qc_fwhm_mm: float | None = None
    qc_sharpness: float | None = None
    qc_ghost: float | None = None
    qc_qi1: float | None = None
    qc_spike: float | None = None
    qc_inu: float | None = None
    qc_ringing: float | None = None
    qc_border_truncation: float | None = None
    qc_bad_slices: int | None = None
    # anonymization and anatomy
    anonymization: str | None = None
    anonymization_confidence: float | None = None
    #: how the class was decided: "rules" (template-free) or "rules+deepbet-<version>"
    anonymization_method: str | None = None
    anon_fraction: float | None = None
    anon_mask_path: str | None = None
    anatomy_mask_path: str | None = None
    # outputs
    converted_path: str | None = None
    derived_path: str | None = None
    array_path: str | None = None
    array_shape: tuple[int, ...] | None = None
    array_spacing_mm: tuple[float, ...] | None = None
    array_crop_box: tuple[int, ...] | None = None
    array_affine: tuple[float, ...] | None = None
    # provenance
    stage_fingerprints: tuple[str, ...] = ()
    processed_at: str | None = None

    def replace(self, **changes: Any) -> "ImageRecord":
        """Return a copy with ``changes`` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)

    def excluded_for(self, *reasons: str, detail: str | None = None) -> "ImageRecord":
        """Return a copy marked excluded, adding ``reasons`` (kept unique, in order)."""
        merged = tuple(dict.fromkeys((*self.exclusion_reasons, *reasons)))
        details = "; ".join(d for d in (self.exclusion_detail, detail) if d) or None
        return dataclasses.replace(
            self, included=False, exclusion_reasons=merged, exclusion_detail=details
        )

    def with_warning(self, message: str) -> "ImageRecord":
        """Return a copy with ``message`` appended to ``warnings``."""
        return dataclasses.replace(self, warnings=(*self.warnings, message))


def make_image_id(*parts: str) -> str:
    """A stable 16-hex-digit id from the parts that identify an image.

    Examples
    --------
    >>> make_image_id("ds000001", "sub-01/anat/sub-01_T1w.nii.gz")
    'e3896e81f9b092be'
    """
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]


_STR = pa.string()
_F64 = pa.float64()
_I64 = pa.int64()

#: Arrow type of every field, in dataclass order.
ARROW_SCHEMA: pa.Schema = pa.schema(
    [
        ("image_id", _STR), ("dataset", _STR), ("source_kind", _STR), ("source_path", _STR),
        ("modality", _STR), ("subject", _STR), ("session", _STR), ("run", _STR),
        ("acquisition", _STR), ("suffix", _STR), ("derived_from", _STR),
        ("included", pa.bool_()), ("exclusion_reasons", pa.list_(_STR)),
        ("exclusion_detail", _STR), ("warnings", pa.list_(_STR)),
        ("ndim", _I64), ("shape", pa.list_(_I64)), ("spacing_mm", pa.list_(_F64)),
        ("fov_mm", pa.list_(_F64)), ("n_volumes", _I64), ("dtype", _STR),
        ("file_size_bytes", _I64), ("source_mtime_ns", _I64),
        ("age", _F64), ("sex", _STR), ("participant_json", _STR),
        ("manufacturer", _STR), ("manufacturer_model", _STR), ("field_strength_t", _F64),
        ("repetition_time_s", _F64), ("echo_time_s", _F64),
        ("phase_encoding_direction", _STR), ("series_description", _STR),
        ("protocol_name", _STR), ("image_type", pa.list_(_STR)),
        ("series_instance_uid", _STR),
        ("bval_path", _STR), ("bvec_path", _STR), ("dwi_shells", pa.list_(_F64)),
        ("dwi_nan_voxels", _I64), ("dwi_degenerate_voxels", _I64),
        ("dwi_motion_max_mm", _F64), ("dwi_motion_mean_mm", _F64),
        ("iqs", _F64), ("iqs_noise", _F64), ("iqs_blur", _F64), ("iqs_artifact", _F64),
        ("fov_suboptimal", pa.bool_()), ("corrupted", pa.bool_()), ("iqs_group", _F64),
        ("iqs_source", _STR), ("qc_noise_sigma", _F64), ("qc_snr", _F64),
        ("qc_snr_dietrich", _F64), ("qc_cnr", _F64), ("qc_cjv", _F64), ("qc_efc", _F64),
        ("qc_fber", _F64), ("qc_fwhm_mm", _F64), ("qc_sharpness", _F64), ("qc_ghost", _F64),
        ("qc_qi1", _F64), ("qc_spike", _F64), ("qc_inu", _F64),
        ("qc_ringing", _F64), ("qc_border_truncation", _F64), ("qc_bad_slices", _I64),
        ("anonymization", _STR), ("anonymization_confidence", _F64),
        ("anonymization_method", _STR), ("anon_fraction", _F64),
        ("anon_mask_path", _STR), ("anatomy_mask_path", _STR),
        ("converted_path", _STR), ("derived_path", _STR), ("array_path", _STR),
        ("array_shape", pa.list_(_I64)), ("array_spacing_mm", pa.list_(_F64)),
        ("array_crop_box", pa.list_(_I64)), ("array_affine", pa.list_(_F64)),
        ("stage_fingerprints", pa.list_(_STR)), ("processed_at", _STR),
    ],
    metadata={b"schema_version": SCHEMA_VERSION.encode()},
)

_GET_ALL = operator.attrgetter(*ARROW_SCHEMA.names)

_TUPLE_FIELDS = frozenset(
    f.name for f in dataclasses.fields(ImageRecord) if "tuple" in str(f.type)
)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ImageRecord))
_POSITION = {name: i for i, name in enumerate(_FIELD_NAMES)}
_REQUIRED = object()
_DEFAULTS = tuple(_REQUIRED if f.default is dataclasses.MISSING else f.default
                  for f in dataclasses.fields(ImageRecord))


def row_from_fields(fields: dict[str, Any]) -> tuple[Any, ...]:
    """One row as a tuple in schema order: ``fields`` over the record's defaults.

    The fast path for building many rows (the index pass): no dataclass is
    made; :func:`rows_to_table` and ``ImageRecord(*row)`` take the result.

    Raises
    ------
    KeyError
        For a name that is not a manifest column.
    ValueError
        When a required column (``image_id``, ``dataset``, ...) is missing.
    """
    row = list(_DEFAULTS)
    for name, value in fields.items():
        row[_POSITION[name]] = value
    if _REQUIRED in row:
        missing = [n for n, v in zip(_FIELD_NAMES, row) if v is _REQUIRED]
        raise ValueError(f"manifest row lacks required columns {missing}")
    return tuple(row)


def rows_to_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """Convert rows in schema order (see :func:`row_from_fields`) to an Arrow table."""
    if not rows:
        return ARROW_SCHEMA.empty_table()
    n = len(rows)
    # Most columns of a fresh index are all null: pa.nulls skips converting n Python Nones.
    columns = [pa.nulls(n, field.type) if column.count(None) == n else pa.array(column, field.type)
               for column, field in zip(zip(*rows), ARROW_SCHEMA)]
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def records_to_table(records: list[ImageRecord]) -> pa.Table:
    """Convert records to an Arrow table with :data:`ARROW_SCHEMA`."""
    return rows_to_table(list(map(_GET_ALL, records)))


def record_from_row(row: dict[str, Any]) -> ImageRecord:
    """Build a record from one row dict as read back from Parquet.

    Columns unknown to this schema version are ignored; missing ones take defaults.
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(ImageRecord):
        if f.name not in row:
            continue
        value = row[f.name]
        if f.name in _TUPLE_FIELDS and value is not None:
            value = tuple(value)
        kwargs[f.name] = value
    return ImageRecord(**kwargs)


def table_to_records(table: pa.Table) -> list[ImageRecord]:
    """Convert an Arrow table (any superset/subset of the schema) to records.

    Column by column (``to_pylist`` per column, then positional records),
    several times faster than a dict per row at 100k rows.
    """
    n = table.num_rows
    present = set(table.column_names)
    columns: list[Any] = []
    for name, default in zip(_FIELD_NAMES, _DEFAULTS):
        if name not in present:
            if default is _REQUIRED:
                raise ValueError(f"manifest table lacks required column {name!r}")
            columns.append([default] * n)
            continue
        values = table.column(name).to_pylist()
        if name in _TUPLE_FIELDS:
            values = [None if v is None else tuple(v) for v in values]
        columns.append(values)
    return [ImageRecord(*row) for row in zip(*columns)]


__all__ = [
    "ARROW_SCHEMA", "Anonymization", "ExclusionReason", "ImageRecord", "Modality",
    "PRETRAINING_MODALITIES", "SCHEMA_VERSION", "SourceKind", "make_image_id",
    "record_from_row", "records_to_table", "row_from_fields", "rows_to_table", "table_to_records",
]
