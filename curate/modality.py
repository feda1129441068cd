"""Assign a modality to an image from BIDS entities or clinical series metadata.

The rules are data (``curate/rules/modalities.toml``); this module only
applies them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any
from functools import lru_cache
from importlib import resources
from pathlib import Path

from manifests.schema import Modality


@dataclass(frozen=True, slots=True)
class ModalityRules:
    """Compiled modality rules."""

    bids_suffix: dict[str, str]
    bids_entity_rules: tuple[tuple[str, re.Pattern[str], str], ...]
    series_rules: tuple[tuple[re.Pattern[str], str], ...]
    localizer_image_types: frozenset[str]
    derived_image_types: frozenset[str]


def parse_rules(text: str) -> ModalityRules:
    """Compile the TOML rules text."""
    data = tomllib.loads(text)
    valid = {m.value for m in Modality}
    for value in [*data["bids_suffix"].values(), *(r["modality"] for r in data["series_rules"])]:
        if value not in valid:
            raise ValueError(f"unknown modality {value!r} in modality rules")
    return ModalityRules(
        bids_suffix=dict(data["bids_suffix"]),
        bids_entity_rules=tuple(
            (r["entity"], re.compile(r["pattern"]), r["modality"])
            for r in data.get("bids_entity_rules", [])
        ),
        series_rules=tuple((re.compile(r["pattern"]), r["modality"]) for r in data["series_rules"]),
        localizer_image_types=frozenset(data["image_type"]["localizer"]),
        derived_image_types=frozenset(data["image_type"]["derived"]),
    )


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> ModalityRules:
    """Load rules from ``path``, or the packaged defaults."""
    if path is None:
        text = resources.files("curate.rules").joinpath("modalities.toml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_rules(text)


def bids_modality(suffix: str | None, entities: dict[str, str], rules: ModalityRules) -> str:
    """Modality of a BIDS file from its suffix, refined by entity rules.

    Examples
    --------
    >>> r = load_rules()
    >>> bids_modality("T2starw", {"acquisition": "swi"}, r)
    'SWI'
    >>> bids_modality("bold", {"task": "rest"}, r)
    'BOLD'
    """
    base = rules.bids_suffix.get(suffix or "", Modality.OTHER.value)
    if base in (Modality.DWI.value, Modality.BOLD.value, Modality.OTHER.value):
        return base
    for entity, pattern, modality in rules.bids_entity_rules:
        value = entities.get(entity)
        if value and pattern.search(value):
            return modality
    return base


def series_modality(texts: list[str | None], image_type: tuple[str, ...] | None,
                    rules: ModalityRules) -> str:
    """Modality of a clinical series from its descriptions and DICOM ImageType.

    Examples
    --------
    >>> series_modality(["AX T2 FLAIR"], None, load_rules())
    'FLAIR'
    >>> series_modality(["T1 MPRAGE"], ("ORIGINAL", "PRIMARY", "LOCALIZER"), load_rules())
    'localizer'
    """
    if image_type and rules.localizer_image_types & {t.upper() for t in image_type}:
        return Modality.LOCALIZER.value
    for text in texts:
        if not text:
            continue
        for pattern, modality in rules.series_rules:
            if pattern.search(text):
                return modality
    return Modality.OTHER.value


def is_derived_series(image_type: tuple[str, ...] | None, rules: ModalityRules) -> bool:
    """True when DICOM ImageType marks a derived/secondary series."""
    if not image_type:
        return False
    upper = [t.upper() for t in image_type]
    return upper[0] in ("DERIVED", "SECONDARY") or bool(rules.derived_image_types & set(upper[2:]))


#: ImageType values (third and later) that name the part of a complex image.
IMAGE_PARTS = {"M": "mag", "MAGNITUDE": "mag", "P": "phase", "PHASE": "phase", "R": "real",
          "REAL": "real", "I": "imag", "IMAGINARY": "imag"}


def image_part(image_type: Any) -> str:
    """``mag``, ``phase``, ``real``, ``imag`` from a DICOM ImageType, or ``""`` when it says none.

    Siemens writes ``M``/``P``/``R``/``I`` (or the words), Philips ``M_FFE``,
    ``P_SE``...; a tuple or list (a dcm2niix sidecar's ``ImageType``) or one string.

    Examples
    --------
    >>> image_part(("ORIGINAL", "PRIMARY", "P", "ND")), image_part(["ORIGINAL", "PRIMARY", "M_FFE"])
    ('phase', 'mag')
    """
    values = image_type if isinstance(image_type, (tuple, list)) else (image_type,) if image_type else ()
    for value in [str(t).upper() for t in values][2:]:
        for word in (value, value.split("_")[0]):
            if word in IMAGE_PARTS:
                return IMAGE_PARTS[word]
    return ""


def non_magnitude_part(entities: dict[str, str], image_type: Any) -> str | None:
    """``phase``, ``real`` or ``imag`` when a NIfTI file holds that part of a complex image.

    From the BIDS ``part-`` entity, else from the sidecar's ``ImageType`` (as
    dcm2niix writes it).  Such images are not intensities to pre-train on.

    Examples
    --------
    >>> non_magnitude_part({"part": "phase"}, None), non_magnitude_part({}, ["ORIGINAL", "PRIMARY", "M", "ND"])
    ('phase', None)
    """
    part = entities.get("part") or image_part(image_type)
    return part if part in ("phase", "real", "imag") else None

