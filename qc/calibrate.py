"""Fit the IQS calibration on controlled degradations of real images from pip packages.

For every (family, degradation, measure) the knots are the median of the
measure over the calibration images at each severity level, paired with the
level's target score (1 clean ... 5 unusable).  Levels whose median does not
rise at least 10 % above the previous knot are dropped, so every map is
monotone and no measure jumps to 5 within its own jitter; a measure
left with fewer than two knots, or whose severest knot is less than 50 % above
the clean one, does not enter the calibration.

Run ``python -m qc.calibrate`` (about 2-3 minutes on one core) to rewrite
``qc/calibration/iqs_v1.json`` and ``docs/iqs_calibration.png``.

Calibration images
    ``structural``: pydeface's mean head (whole head with face, real
    background) and nilearn's MNI152 T1 (skull-stripped, zero background).
    ``FA`` and ``MD`` (one family each, no artifact part): FA- and MD-like maps
    made from nilearn's MNI152 white/grey-matter probability maps
    (``0.15 + 0.55 WM`` and ``(0.7 + 2.3 CSF) 1e-3`` inside the brain mask);
    there is no real FA/MD map of useful size in a pip package.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qc import degrade
from qc.iqs import DEFAULT_CALIBRATION, measure_values
from qc.profile import measure_image

TARGETS = (1.0, 2.0, 3.0, 4.0, 5.0)
Degrader = Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True, slots=True)
class Degradation:
    """One controlled degradation: severity levels (first = clean) and the measures it calibrates."""

    name: str
    component: str
    levels: tuple[float, ...]
    measures: tuple[str, ...]
    apply: Degrader


def _noise(x: np.ndarray, level: float, ref: float, rng: np.random.Generator) -> np.ndarray:
    return degrade.rician_noise(x, level * ref, rng) if level > 0 else x


def _map_noise(x: np.ndarray, level: float, ref: float, rng: np.random.Generator) -> np.ndarray:
    noisy = x + rng.normal(0, level * ref, x.shape).astype(np.float32)
    return np.where(x != 0, noisy, 0).astype(np.float32)


STRUCTURAL = (
    Degradation("rician noise (sigma / tissue)", "noise", (0, .02, .04, .08, .16), ("nsr",), _noise),
    Degradation("gaussian blur (FWHM voxels)", "blur", (0, 1.5, 3, 5, 8), ("fwhm_mm",),
                lambda x, v, r, g: degrade.gaussian_blur(x, v)),
    Degradation("nyquist ghost (amplitude)", "artifact", (0, .03, .08, .15, .3), ("ghost",),
                lambda x, v, r, g: degrade.nyquist_ghost(x, v)),
    Degradation("k-space spike (amplitude)", "artifact", (0, .005, .01, .03, .1), ("spike",),
                lambda x, v, r, g: degrade.kspace_spike(x, v)),
    Degradation("bias field (log amplitude)", "artifact", (0, .25, .5, .75, 1.0), ("inu",),
                lambda x, v, r, g: degrade.bias_field(x, v)),
)
DIFFUSION = (
    Degradation("gaussian noise (sigma / tissue)", "noise", (0, .02, .04, .08, .16), ("nsr",), _map_noise),
    STRUCTURAL[1],
)
#: Evaluated (detection table, plot) but not fitted.  Motion is caught through the
#: ghost and blur measures; ringing and QI1 saturate within a narrow range on the
#: templates and read high on the clean head, so they are reported, not scored.
EVALUATED = (
    Degradation("motion k-space phase (fraction of lines, 4 voxels)", "artifact",
                (0, .1, .25, .5, .8), (), lambda x, v, r, g: degrade.motion_phase(x, v, 4.0, g)),
    Degradation("gibbs truncation (1 - kept)", "artifact", (0, .3, .5, .65, .75), (),
                lambda x, v, r, g: degrade.gibbs_truncation(x, 1 - v) if v > 0 else x),
)
#: A knot must exceed the previous one by this fraction to count as a separate level.
MIN_STEP = 0.1
#: The severest knot must exceed the clean one by this fraction, or the measure is not used.
MIN_SPAN = 0.5


def reference_level(x: np.ndarray) -> float:
    """Tissue reference intensity: the 75th percentile of voxels above 10 % of the maximum."""
    finite = x[np.isfinite(x)]
    return float(np.percentile(finite[finite > 0.1 * finite.max()], 75))


def measure_series(images: dict[str, np.ndarray], zooms: dict[str, tuple[float, ...]],
                   deg: Degradation, seed: int = 0) -> dict[str, list[dict[str, float]]]:
    """Measures of every image at every level of ``deg``: ``{image: [values per level]}``."""
    out: dict[str, list[dict[str, float]]] = {}
    for name, x in images.items():
        ref = reference_level(x)
        rng = np.random.default_rng(seed)
        out[name] = [measure_values(measure_image(deg.apply(x, level, ref, rng), zooms[name]))
                     for level in deg.levels]
    return out


def fit_knots(series: dict[str, list[dict[str, float]]], measure: str,
              targets: Sequence[float] = TARGETS) -> dict[str, list[float]] | None:
    """Monotone knots for ``measure`` from per-level medians; ``None`` if it does not separate."""
    xs: list[float] = []
    ys: list[float] = []
    for level, target in enumerate(targets):
        values = [s[level][measure] for s in series.values() if math.isfinite(s[level][measure])]
        if not values:
            continue
        median = float(np.median(values))
        if not xs or median > xs[-1] + MIN_STEP * abs(xs[-1]):
            xs.append(median)
            ys.append(float(target))
    if len(xs) < 2 or xs[-1] - xs[0] < MIN_SPAN * abs(xs[0]):
        return None
    return {"x": [round(v, 6) for v in xs], "y": ys}


def fit_family(images: dict[str, np.ndarray], zooms: dict[str, tuple[float, ...]],
               degradations: Sequence[Degradation]) -> tuple[dict, dict]:
    """``(components, raw)``: knots per component and measure, and every measured value."""
    components: dict[str, dict[str, dict[str, list[float]]]] = {}
    raw: dict[str, dict] = {}
    for deg in degradations:
        series = measure_series(images, zooms, deg)
        raw[deg.name] = {"component": deg.component, "levels": list(deg.levels), "values": series}
        for measure in deg.measures:
            knots = fit_knots(series, measure)
            if knots is not None:
                components.setdefault(deg.component, {})[measure] = knots
    return components, raw


def _load_images() -> tuple[dict[str, dict[str, np.ndarray]], dict[str, tuple[float, ...]]]:
    import nibabel as nib
    import pydeface
    from nilearn import datasets

    head = nib.load(Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz")
    t1 = datasets.load_mni152_template(resolution=1)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj) > 0
    csf = np.clip(brain - gm - wm, 0, 1)
    images = {
        "structural": {"pydeface_head": np.asarray(head.dataobj, np.float32),
                       "mni152_t1": np.asarray(t1.dataobj, np.float32)},
        "FA": {"fa_like": np.where(brain, 0.15 + 0.55 * wm, 0).astype(np.float32)},
        "MD": {"md_like": np.where(brain, (0.7 + 2.3 * csf) * 1e-3, 0).astype(np.float32)},
    }
    zooms = {"pydeface_head": tuple(float(z) for z in head.header.get_zooms()[:3]),
             "mni152_t1": (1.0, 1.0, 1.0), "fa_like": (1.0, 1.0, 1.0), "md_like": (1.0, 1.0, 1.0)}
    return images, zooms


def calibrate(out: Path, raw_out: Path | None) -> dict:
    """Fit every family and write the calibration JSON (and the raw measures)."""
    images, zooms = _load_images()
    structural, raw_s = fit_family(images["structural"], zooms, STRUCTURAL)
    for deg in EVALUATED:
        raw_s[deg.name] = {"component": deg.component, "levels": list(deg.levels),
                           "values": measure_series(images["structural"], zooms, deg)}
    families: dict[str, dict] = {"structural": {"images": sorted(images["structural"]),
                                                "components": structural}}
    raw = {"structural": raw_s}
    # Scanner ADC maps measure what our MD maps measure (mm^2/s): same family.
    members = {"FA": ["FA"], "MD": ["MD", "ADC"]}
    for name in ("FA", "MD"):
        components, raw[name] = fit_family(images[name], zooms, DIFFUSION)
        families[name] = {"modalities": members[name], "images": sorted(images[name]),
                          "components": components}
    calibration = {"version": "iqs_v1", "created_by": "python -m qc.calibrate",
                   "targets": list(TARGETS), "min_step": MIN_STEP, "min_span": MIN_SPAN, "families": families}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    if raw_out is not None:
        raw_out.write_text(json.dumps(raw, indent=1) + "\n",
                           encoding="utf-8")
    return calibration


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qc.calibrate [--out JSON] [--raw JSON] [--plot PNG]``."""
    parser = argparse.ArgumentParser(prog="python -m qc.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION)
    parser.add_argument("--raw", type=Path, default=Path("benchmarks/results/iqs_calibration_raw.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/iqs_calibration.png"))
    args = parser.parse_args(argv)
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    calibrate(args.out, args.raw)
    from qc.calibration_plot import plot

    plot(args.out, args.raw, args.plot)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
