"""Fit the IQS calibration: ``structural`` on real scans, ``FA``/``MD`` on MNI-derived maps.

``structural`` (T1w, T2w, FLAIR, PDw, every other acquired modality) is fitted on
controlled degradations of the real-scan corpus (:mod:`qc.calibrate_real`, from
the raw profiles that ``benchmarks/bench_iqs_metamorphic.py`` stores), templates
left out.  ``FA`` and ``MD`` (one family each, no artifact part) keep the
synthetic fit: FA- and MD-like maps made from nilearn's MNI152 white/grey-matter
probability maps (``0.15 + 0.55 WM`` and ``(0.7 + 2.3 CSF) 1e-3`` inside the
brain mask), as no real FA/MD map of useful size ships in a package.  For those,
the knots are the median of the measure over the maps at each severity level,
paired with the level's target score; a level whose median does not rise 10 %
above the previous knot is dropped, and a measure whose severest knot is less
than 50 % above the clean one is not used.

Run::

    PYTHONPATH=. python benchmarks/bench_iqs_metamorphic.py --raw RAW.json
    PYTHONPATH=. python -m qc.calibrate --corpus-raw RAW.json

to rewrite ``qc/calibration/iqs_v2.json``.
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


def _map_noise(x: np.ndarray, level: float, ref: float, rng: np.random.Generator) -> np.ndarray:
    noisy = x + rng.normal(0, level * ref, x.shape).astype(np.float32)
    return np.where(x != 0, noisy, 0).astype(np.float32)


_BLUR = Degradation("gaussian blur (FWHM voxels)", "blur", (0, 1.5, 3, 5, 8), ("fwhm_mm",),
                    lambda x, v, r, g: degrade.gaussian_blur(x, v))
DIFFUSION = (
    Degradation("gaussian noise (sigma / tissue)", "noise", (0, .02, .04, .08, .16), ("nsr",), _map_noise),
    _BLUR,
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


def calibrate(out: Path, raw_out: Path | None, corpus_raw: Sequence[Path] = (),
              diffusion_from: Path | None = None) -> dict:
    """Fit every family and write the calibration JSON (and the raw measures).

    ``structural`` is fitted on the real-scan corpus's raw profiles
    (``corpus_raw``, from ``benchmarks/bench_iqs_metamorphic.py``; see
    :mod:`qc.calibrate_real`); ``FA`` and ``MD`` on degradations of the
    MNI-derived maps, as no real FA/MD map of useful size ships in a package
    (or copied from the calibration file ``diffusion_from``, to refit only ``structural``).
    """
    from qc import calibrate_real

    real: dict = {}
    for path in corpus_raw:
        real.update(json.loads(Path(path).read_text()))
    levels = {s.name: s.levels for s in calibrate_real.series()}
    structural = calibrate_real.fit_structural(real, levels)
    fitted_on = sorted(k for k, e in real.items() if calibrate_real.FIT_TEMPLATES or not e["is_template"])
    families: dict[str, dict] = {"structural": {"images": fitted_on, "components": structural}}
    raw: dict = {}
    if diffusion_from is not None:
        previous = json.loads(Path(diffusion_from).read_text())["families"]
        families.update({name: previous[name] for name in ("FA", "MD")})
    else:
        images, zooms = _load_images()
        # Scanner ADC maps measure what our MD maps measure (mm^2/s): same family.
        members = {"FA": ["FA"], "MD": ["MD", "ADC"]}
        for name in ("FA", "MD"):
            components, raw[name] = fit_family(images[name], zooms, DIFFUSION)
            families[name] = {"modalities": members[name], "images": sorted(images[name]),
                              "components": components}
    calibration = {"version": "iqs_v2", "created_by": "python -m qc.calibrate",
                   "clean_quantile": calibrate_real.CLEAN_QUANTILE,
                   "targets": {t[0]: list(t[3]) for t in calibrate_real.TARGETS},
                   "min_step": MIN_STEP, "min_span": MIN_SPAN, "families": families}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    if raw_out is not None and raw:
        raw_out.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    return calibration


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qc.calibrate --corpus-raw RAW.json [...] [--out JSON] [--raw JSON]``."""
    parser = argparse.ArgumentParser(prog="python -m qc.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION)
    parser.add_argument("--raw", type=Path, default=Path("benchmarks/results/iqs_calibration_raw.json"))
    parser.add_argument("--corpus-raw", type=Path, nargs="+", required=True,
                        help="raw profiles of the real-scan corpus (benchmarks/bench_iqs_metamorphic.py)")
    parser.add_argument("--diffusion-from", type=Path, default=None,
                        help="copy the FA/MD families from this calibration instead of refitting them")
    args = parser.parse_args(argv)
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    calibrate(args.out, args.raw, args.corpus_raw, args.diffusion_from)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
