"""Acquisition metadata from BIDS/dcm2niix sidecars, as manifest fields."""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int, float)) and str(value).strip() else None


def acquisition_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """Manifest acquisition fields from a sidecar dict (BIDS units: seconds, tesla).

    Examples
    --------
    >>> acquisition_fields({"Manufacturer": "Siemens", "RepetitionTime": 2.3})["repetition_time_s"]
    2.3
    """
    image_type = meta.get("ImageType")
    return {
        "manufacturer": _text(meta.get("Manufacturer")),
        "manufacturer_model": _text(meta.get("ManufacturersModelName")),
        "field_strength_t": _number(meta.get("MagneticFieldStrength")),
        "repetition_time_s": _number(meta.get("RepetitionTime")),
        "echo_time_s": _number(meta.get("EchoTime")),
        "phase_encoding_direction": _text(meta.get("PhaseEncodingDirection")),
        "series_description": _text(meta.get("SeriesDescription")),
        "protocol_name": _text(meta.get("ProtocolName")),
        "image_type": tuple(str(t) for t in image_type) if isinstance(image_type, list) else None,
    }
