"""Manifest schema, Parquet I/O and filters.  Imports nothing else of ours.

Names are loaded on first use (PEP 562), so ``import manifests.schema`` does
not pay for pandas and the filters.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ARROW_SCHEMA": "schema", "PRETRAINING_MODALITIES": "schema", "SCHEMA_VERSION": "schema",
    "Anonymization": "schema", "ExclusionReason": "schema", "ImageRecord": "schema",
    "Modality": "schema", "SourceKind": "schema", "make_image_id": "schema",
    "Counts": "filters", "Selection": "filters", "apply": "filters", "explain": "filters", "select": "filters",
    "build_running": "building",
    "read_frame": "io", "read_records": "io", "read_table": "io", "write_part": "io",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'manifests' has no attribute {name!r}")
    return getattr(importlib.import_module(f"manifests.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = sorted(_WHERE)
