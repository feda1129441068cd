"""Baseline for ``bench_iqs.py``: MRIQC 24's structural IQM set computed the MRIQC way.

MRIQC itself is not installed (it pulls ANTs, AFNI, FSL, nipype, templates);
this module reproduces its metric computations on full-resolution arrays with
ideal masks handed in -- per-tissue masks eroded with a 3x3x3 structure before
summary statistics, EFC and FBER over the whole volume in float64, QI1 from a
z-scored air mask with an opening, QI2 from a KDE and a chi-square fit
(scikit-learn's KernelDensity as in MRIQC, when importable), and AFNI's
lag-1 FWHM on the head.  No registration, no FAST, no N4: those are MRIQC's
bigger costs and are not counted here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.ndimage as ndi
from scipy.stats import chi2, kurtosis

DIETRICH = 0.6551364
STRUCT = ndi.generate_binary_structure(3, 2)


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x))) / 0.6744897501960817)


def summary_stats(img: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for name, mask in masks.items():
        m = ndi.binary_erosion(mask, structure=STRUCT)
        v = img[m]
        if v.size < 1000:
            out[name] = {"mean": 0.0, "median": 0.0, "stdv": 0.0, "mad": 0.0, "n": float(v.size)}
            continue
        out[name] = {"mean": float(v.mean()), "stdv": float(v.std()), "median": float(np.median(v)),
                     "mad": _mad(v), "p95": float(np.percentile(v, 95)), "p05": float(np.percentile(v, 5)),
                     "k": float(kurtosis(v)), "n": float(v.size)}
    return out


def efc(img: np.ndarray) -> float:
    n = img.size
    efc_max = n * (1.0 / np.sqrt(n)) * np.log(1.0 / np.sqrt(n))
    b_max = np.sqrt((img.astype(np.float64) ** 2).sum())
    return float((1.0 / efc_max) * np.sum((img / b_max) * np.log((img + 1e-16) / b_max)))


def fber(img: np.ndarray, head: np.ndarray) -> float:
    fg = np.median(np.abs(img[head]) ** 2)
    bg = np.median(np.abs(img[~head]) ** 2)
    return -1.0 if bg < 1e-3 else float(fg / bg)


def qi1(img: np.ndarray, air: np.ndarray) -> float:
    bg = img[air]
    if (bg > 0).sum() < 10 or air.sum() < 1:
        return -1.0
    spread = _mad(bg[bg > 0])
    art = np.zeros(img.shape, bool)
    art[air] = bg / max(spread, 1e-12) > 10.0
    art = ndi.binary_opening(art, structure=ndi.generate_binary_structure(3, 1))
    return float(art.sum() / (air.sum() + art.sum()))


def qi2(img: np.ndarray, air: np.ndarray) -> float:
    try:
        from sklearn.neighbors import KernelDensity
    except ImportError:
        return math.nan
    rng = np.random.default_rng(1191935)
    data = img[air]
    data = data[data > 0]
    if data.size < 1000:
        return 0.0
    model = data if data.size < 300_000 else rng.choice(data, size=300_000)
    grid = np.linspace(0.0, np.percentile(data, 99), 1000)
    kde = np.exp(KernelDensity(bandwidth=0.05 * np.percentile(data, 98), kernel="gaussian")
                 .fit(model[:, None]).score_samples(grid[:, None]))
    hi = int(np.argmax(kde[::-1] > kde.max() * 0.5))
    param = chi2.fit(model[model < np.percentile(data, 95)], 32)
    pdf = chi2.pdf(grid, *param[:-2], loc=param[-2], scale=param[-1])
    return float(np.abs(kde[-hi:] - pdf[-hi:]).mean()) if hi else 0.0


def fwhm_afni(img: np.ndarray, head: np.ndarray) -> float:
    widths = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        pair = head[tuple(lo)] & head[tuple(hi)]
        d = (img[tuple(hi)] - img[tuple(lo)])[pair].astype(np.float64)
        ratio = 1 - np.var(d) / (2 * np.var(img[head].astype(np.float64)))
        widths.append(math.sqrt(-2 * math.log(2) / math.log(min(max(ratio, 1e-6), 1 - 1e-9))))
    return float(np.mean(widths))


def iqms(img: np.ndarray, head: np.ndarray, air: np.ndarray, wm: np.ndarray, gm: np.ndarray,
         csf: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """The metric set and the CPU seconds each part took."""
    timings: dict[str, float] = {}
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        start = time.process_time()
        value = fn()
        timings[name] = time.process_time() - start
        return value

    img = img.astype(np.float32)
    stats = timed("summary_stats (eroded masks)", lambda: summary_stats(img, {"bg": air, "csf": csf,
                                                                               "gm": gm, "wm": wm}))
    w, g, b = stats["wm"], stats["gm"], stats["bg"]
    out["snr_wm"] = w["median"] / (w["stdv"] * math.sqrt(w["n"] / (w["n"] - 1))) if w["stdv"] else -1.0
    out["snr_d"] = (DIETRICH * w["median"] / b["mad"]) if b["mad"] > 1.0 else (
        DIETRICH * w["median"] / b["stdv"] if b["stdv"] > 1e-3 else -1.0)
    out["cnr"] = abs(w["median"] - g["median"]) / math.sqrt(b["stdv"] ** 2 + w["stdv"] ** 2 + g["stdv"] ** 2)
    out["cjv"] = (w["mad"] + g["mad"]) / abs(w["median"] - g["median"])
    out["efc"] = timed("efc", lambda: efc(img))
    out["fber"] = timed("fber", lambda: fber(img, head))
    out["qi_1"] = timed("qi_1", lambda: qi1(img, air))
    out["qi_2"] = timed("qi_2 (KDE + chi2 fit)", lambda: qi2(img, air))
    out["fwhm"] = timed("fwhm (lag-1, AFNI classic)", lambda: fwhm_afni(img, head))
    out["wm2max"] = w["median"] / float(np.percentile(img, 99.95))
    return out, timings
