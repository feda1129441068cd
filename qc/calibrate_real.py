"""Fit the structural IQS calibration on degradations of real scans, with leave-one-source-out.

Input: the raw profiles that ``benchmarks/bench_iqs_metamorphic.py`` measured on the
real-scan corpus (every scan clean and at every level of every degradation).

For each scored measure the first knot (score 1) is the :data:`CLEAN_QUANTILE`
quantile of the measure over the clean training scans, so most clean real
scans read 1 on it; each degradation level adds a knot at the
:data:`DEGRADED_QUANTILE` quantile of the measure over the training scans at
that level, paired with the level's target
(:data:`TARGETS`).  Knots that do not rise :data:`MIN_STEP` above the previous
one are dropped (monotone maps).  Templates and averages are left out of the
fit (:data:`FIT_TEMPLATES`): they are smoother and cleaner than any scan.

Leave-one-source-out: the fit is repeated without each source in turn and the
held-out source's scans are scored: clean ones should be <= 2.5 and the
strongest level of every degradation >= 3.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from qc.iqs import Calibration, score
from qc.profile import Profile

#: (degradation series, measure, component, target score per level).
TARGETS: tuple[tuple[str, str, str, tuple[float, ...]], ...] = (
    ("noise", "nsr", "noise", (1.75, 2.5, 3.5, 5.0)),
    ("blur", "fwhm_mm", "blur", (2.0, 3.5, 5.0)),
    ("ghost", "ghost", "artifact", (1.75, 2.5, 3.5, 5.0)),
    ("bias", "inu", "artifact", (1.75, 2.5, 3.5, 5.0)),
    ("spike", "spike", "artifact", (1.5, 2.0, 3.5, 5.0)),
)
CLEAN_QUANTILE = 0.9
#: Quantile over the scans of a degraded level's knot: low, so that the strongest level
#: reaches its target on most scans, not on half of them.
DEGRADED_QUANTILE = 0.25
MIN_STEP = 0.05
FIT_TEMPLATES = False
CLEAN_MAX = 2.5
DEGRADED_MIN = 3.5


def series() -> tuple:
    """The degradation series fitted: :data:`qc.metamorphic.SERIES` and the k-space spike."""
    from qc import degrade, metamorphic

    spike = metamorphic.Series("spike", "artifact", (0.005, 0.01, 0.03, 0.1),
                               lambda x, v, r, g: degrade.kspace_spike(x, v))
    return (*metamorphic.SERIES, spike)


def _values(profile: dict) -> dict[str, float]:
    def get(key: str) -> float:
        v = profile.get(key)
        return math.nan if v is None else float(v)

    signal, sigma = get("signal"), get("noise_sigma")
    return {"nsr": sigma / signal if signal > 0 else math.nan, "fwhm_mm": get("fwhm_mm"),
            "ghost": get("ghost"), "inu": get("inu"), "spike": get("spike")}


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def fit_structural(raw: dict, levels: dict[str, tuple[float, ...]], exclude: str | None = None) -> dict:
    """Components (knots per measure) fitted on the scans of ``raw`` not from source ``exclude``."""
    scans = [e for e in raw.values() if e["source"] != exclude and (FIT_TEMPLATES or not e["is_template"])]
    components: dict[str, dict] = {}
    for series, measure, comp, targets in TARGETS:
        clean = _finite(_values(e["profiles"]["clean"])[measure] for e in scans)
        if not clean:
            continue
        xs, ys = [float(np.quantile(clean, CLEAN_QUANTILE))], [1.0]
        for level, target in zip(levels[series], targets):
            at = _finite(_values(e["profiles"].get(f"deg/{series}/{level:g}", {}))[measure] for e in scans)
            if not at:
                continue
            x = float(np.quantile(at, DEGRADED_QUANTILE))
            if x > xs[-1] * (1 + MIN_STEP):
                xs.append(x)
                ys.append(target)
        if len(xs) >= 2:
            components.setdefault(comp, {})[measure] = {"x": [round(v, 6) for v in xs], "y": ys}
    return components


def _profile(raw: dict) -> Profile:
    return Profile(**{k: (math.nan if v is None else v) for k, v in raw.items()})


def check_scan(entry: dict, calibration: Calibration, levels: dict[str, tuple[float, ...]]) -> dict:
    """Clean IQS and the IQS at the strongest level of every degradation of one scan."""
    out = {"clean": score(_profile(entry["profiles"]["clean"]), entry["modality"], calibration).iqs}
    for series, *_ in TARGETS:
        key = f"deg/{series}/{levels[series][-1]:g}"
        if key in entry["profiles"]:
            out[series] = score(_profile(entry["profiles"][key]), entry["modality"], calibration).iqs
    return out


def leave_one_source_out(raw: dict, base: dict, levels: dict[str, tuple[float, ...]]) -> list[dict]:
    """Per held-out source: its scans' clean and strongest-degraded IQS under a fit without it.

    ``base`` is the calibration JSON whose other families are kept.
    """
    rows = []
    for source in sorted({e["source"] for e in raw.values()}):
        families = dict(base["families"])
        families["structural"] = {**families["structural"],
                                  "components": fit_structural(raw, levels, exclude=source)}
        calibration = Calibration(version="loso", families=families)
        for scan_id, entry in raw.items():
            if entry["source"] != source:
                continue
            result = check_scan(entry, calibration, levels)
            degraded = {k: v for k, v in result.items() if k != "clean"}
            rows.append({"source": source, "scan": scan_id, "template": entry["is_template"],
                         "clean": result["clean"], "degraded": degraded,
                         "clean_ok": result["clean"] <= CLEAN_MAX,
                         "degraded_ok": all(v >= DEGRADED_MIN for v in degraded.values()),
                         "degraded_ok_but_bias": all(v >= DEGRADED_MIN for k, v in degraded.items()
                                                     if k != "bias")})
    return rows
