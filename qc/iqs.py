"""OpenMind's image quality score (IQS) from the raw measures of :mod:`qc.profile`.

Components, each on 1 (clean) to 5 (unusable) [OpenMind, App. B.1]:

* ``noise`` -- noise over signal (``noise_sigma / signal``);
* ``blur`` -- FWHM of the image in mm;
* ``artifact`` -- the worst of ghosting, the QI1-like air artifact fraction,
  the k-space spike score, intensity non-uniformity and ringing; left out for
  DWI-derived maps (FA, MD), as in the paper;
* flags ``fov_suboptimal`` (anatomy cut by a face of the volume, or a small
  part of it) and ``corrupted`` (no foreground, or zeroed / duplicated slices).

``iqs`` follows the paper's rule: the mean of the numeric parts; 5 if
corrupted or any part is 5; then +1, capped at 5, if ``fov_suboptimal``.

Each measure maps to a score by piecewise-linear interpolation through knots
(measure value -> score) that live in a versioned JSON file fitted by
:mod:`qc.calibrate` on controlled degradations, per modality family.

Examples
--------
>>> combine([2.0, 1.0, 3.0], fov_suboptimal=False, corrupted=False)
2.0
>>> combine([2.0, 5.0], fov_suboptimal=False, corrupted=False)
5.0
>>> combine([2.0, 3.0], fov_suboptimal=True, corrupted=False)
3.5
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qc.profile import Profile

DEFAULT_CALIBRATION = Path(__file__).parent / "calibration" / "iqs_v2.json"
COMPONENTS = ("noise", "blur", "artifact")


class CalibrationError(ValueError):
    """A calibration file that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Knots per modality family, component and measure."""

    version: str
    families: dict[str, dict[str, Any]]

    def family_of(self, modality: str) -> str:
        """The family whose ``modalities`` list ``modality``, else ``"structural"``."""
        for name, family in self.families.items():
            if modality in family.get("modalities", ()):
                return name
        return "structural"


def load_calibration(path: Path | str | None = None) -> Calibration:
    """Read a calibration JSON (the packaged ``iqs_v2.json`` by default)."""
    path = Path(path) if path is not None else DEFAULT_CALIBRATION
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        families = data["families"]
        version = str(data["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"cannot use IQS calibration {path}: {exc}") from exc
    if "structural" not in families:
        raise CalibrationError(f"IQS calibration {path} has no 'structural' family")
    return Calibration(version=version, families=families)


@dataclass(frozen=True, slots=True)
class FlagRules:
    """Thresholds of the two flags (from ``IqsConfig``)."""

    max_border_fraction: float = 0.25
    min_head_fraction: float = 0.03
    max_bad_slices: int = 0


@dataclass(frozen=True, slots=True)
class IqsResult:
    """Scores of one image; components are NaN where their measures are."""

    iqs: float
    noise: float
    blur: float
    artifact: float
    fov_suboptimal: bool
    corrupted: bool
    reasons: tuple[str, ...] = ()


def combine(parts: Sequence[float], fov_suboptimal: bool, corrupted: bool) -> float:
    """OpenMind's rule on the numeric parts (NaN parts are left out; none at all gives 5)."""
    numeric = [p for p in parts if math.isfinite(p)]
    if corrupted or not numeric or any(p >= 5.0 for p in numeric):
        return 5.0
    score = float(np.mean(numeric))
    return min(5.0, score + 1.0) if fov_suboptimal else score


def measure_values(profile: Profile) -> dict[str, float]:
    """The measures the calibration knows, derived ones included."""
    nsr = profile.noise_sigma / profile.signal if profile.signal and profile.signal > 0 else math.nan
    return {"nsr": nsr, "fwhm_mm": profile.fwhm_mm, "ghost": profile.ghost, "qi1": profile.qi1,
            "spike": profile.spike, "inu": profile.inu, "ringing": profile.ringing}


def interpolate(value: float, knots: dict[str, list[float]]) -> float:
    """Score of ``value`` through ``knots`` (``x`` increasing), clamped to [1, 5]; NaN stays NaN."""
    if not math.isfinite(value):
        return math.nan
    return float(np.clip(np.interp(value, knots["x"], knots["y"]), 1.0, 5.0))


def component(values: dict[str, float], spec: dict[str, dict[str, list[float]]]) -> float:
    """Worst (largest) score over the component's measures; NaN if none is defined."""
    scores = [interpolate(values.get(name, math.nan), knots) for name, knots in spec.items()]
    finite = [s for s in scores if math.isfinite(s)]
    return max(finite) if finite else math.nan


def flags(profile: Profile, rules: FlagRules) -> tuple[bool, bool, list[str]]:
    """``(fov_suboptimal, corrupted, reasons)`` of a profile."""
    reasons: list[str] = []
    corrupted = False
    if not math.isfinite(profile.head_fraction) or profile.head_fraction == 0:
        corrupted = True
        reasons.append("corrupted: " + profile.notes.get("head", profile.notes.get("shape", "no foreground")))
    if profile.bad_slices > rules.max_bad_slices:
        corrupted = True
        reasons.append(f"corrupted: {profile.bad_slices} zeroed or duplicated slices")
    fov = False
    if math.isfinite(profile.border_truncation) and profile.border_truncation > rules.max_border_fraction:
        fov = True
        reasons.append(f"fov: the head meets a volume face over {profile.border_truncation:.0%} "
                       "of its largest cross-section")
    if 0 < profile.head_fraction < rules.min_head_fraction:
        fov = True
        reasons.append(f"fov: anatomy fills {profile.head_fraction:.1%} of the volume")
    return fov, corrupted, reasons


def score(profile: Profile, modality: str, calibration: Calibration,
          rules: FlagRules = FlagRules()) -> IqsResult:
    """Components, flags and IQS of one image."""
    family = calibration.families[calibration.family_of(modality)]
    values = measure_values(profile)
    parts = {name: component(values, family["components"][name]) if name in family["components"]
             else math.nan for name in COMPONENTS}
    fov, corrupted, reasons = flags(profile, rules)
    for name, value in parts.items():
        if name in family["components"] and not math.isfinite(value):
            reasons.append(f"{name}: no measure defined")
    total = combine(list(parts.values()), fov, corrupted)
    return IqsResult(iqs=total, noise=parts["noise"], blur=parts["blur"], artifact=parts["artifact"],
                     fov_suboptimal=fov, corrupted=corrupted, reasons=tuple(reasons))
