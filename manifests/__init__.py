"""Manifest schema, Parquet I/O and filters.  Imports nothing else of ours."""

from manifests.filters import Selection, apply, select
from manifests.io import read_frame, read_records, read_table, write_part
from manifests.schema import (
    ARROW_SCHEMA,
    PRETRAINING_MODALITIES,
    SCHEMA_VERSION,
    Anonymization,
    ExclusionReason,
    ImageRecord,
    Modality,
    SourceKind,
    make_image_id,
)

__all__ = [
    "ARROW_SCHEMA", "PRETRAINING_MODALITIES", "SCHEMA_VERSION", "Anonymization",
    "ExclusionReason", "ImageRecord", "Modality", "Selection", "SourceKind", "apply",
    "make_image_id", "read_frame", "read_records", "read_table", "select", "write_part",
]
