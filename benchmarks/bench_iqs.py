"""IQS speed and detection, side by side with MRIQC's structural IQM set computed the MRIQC way.

Run (one core, ~3 minutes)::

    PYTHONPATH=. python benchmarks/bench_iqs.py [--out benchmarks/results/bench_iqs.md]

* Speed: a 1 mm 256^3 int16 ``.nii.gz`` (pydeface's mean head, padded to 256^3)
  read from disk, measured and scored, median of 3 runs, single thread; next to
  it the MRIQC-way metric set (:mod:`mriqc_way`) on the same array with ideal
  masks, per part.  The issue's figure for MRIQC 24.0.2 itself (about 15 s per
  image on 2 cores for the metric set, before registration) is quoted, not
  measured here.
* Detection: clean vs visibly degraded copies (noise, blur, ghost, spike,
  motion, bias): does each IQS component / MRIQC-way metric move the bad way?
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import mriqc_way  # noqa: E402

from curate.io import read_image  # noqa: E402
from qc import artifacts, degrade, measures, regions  # noqa: E402
from qc.iqs import load_calibration, score  # noqa: E402
from qc.profile import measure_image, upsample  # noqa: E402

#: +1: larger is worse; -1: smaller is worse.
MRIQC_DIRECTION = {"snr_wm": -1, "snr_d": -1, "cnr": -1, "cjv": 1, "efc": 1, "fber": -1,
                   "qi_1": 1, "qi_2": 1, "fwhm": 1}


def head_256() -> nib.Nifti1Image:
    """pydeface's mean head (176 x 256 x 256) padded to a 1 mm 256^3 volume."""
    import pydeface

    img = nib.load(Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz")
    data = np.asarray(img.dataobj, np.float32)
    air = data[:8, :32, -32:].ravel()  # a corner of pure background: pad with values drawn from it
    pad = np.random.default_rng(0).choice(air, size=(40, *data.shape[1:]))
    data = np.concatenate([pad, data, pad[::-1]], axis=0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -128.0
    return nib.Nifti1Image(data.astype(np.int16), affine)


def ideal_masks(data: np.ndarray) -> dict[str, np.ndarray]:
    """Head, air and tissue masks of the clean volume at full resolution (handed to the baseline)."""
    reg = regions.split(data)
    head = upsample(reg.head, reg.step, data.shape)
    air = upsample(reg.air, reg.step, data.shape)
    inner = upsample(regions.inner_region(reg.head, None), reg.step, data.shape)
    low, high = regions.tissue_thresholds(data[inner])
    return {"head": head, "air": air, "wm": inner & (data > high),
            "gm": inner & (data > low) & (data <= high), "csf": inner & (data <= low)}


def time_ours(path: Path, repeats: int = 3) -> tuple[tuple[float, float], dict[str, float]]:
    """((median CPU s, median wall s) per image incl. reading, CPU s per part)."""
    calibration = load_calibration()
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        image = read_image(path)
        result = score(measure_image(image.data, image.zooms[:3]), "T1w", calibration)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert 1 <= result.iqs <= 5
    data = image.data
    parts: dict[str, float] = {}

    def timed(name, fn):
        start = time.process_time()
        fn()
        parts[name] = time.process_time() - start

    timed("read .nii.gz (nibabel)", lambda: read_image(path))
    reg = regions.split(data)
    timed("head/air split (work grid)", lambda: regions.split(data))
    inner = upsample(regions.inner_region(reg.head, None), reg.step, data.shape)
    timed("tissue noise scale (patch residuals)",
          lambda: measures.residual_sigma(data, inner, zooms=(1, 1, 1), quantile=0.1, every=3))
    timed("efc (work grid)", lambda: measures.efc(reg.work))
    timed("fwhm + sharpness", lambda: measures.fwhm(data, inner, (1, 1, 1), 0.0, thin=2, median=True))
    timed("spike score", lambda: artifacts.spike_score(data))
    timed("ringing", lambda: artifacts.ringing(data, 1.0, 100.0))
    timed("bad slices", lambda: artifacts.bad_slices(data, reg.head, reg.step))
    return (float(np.median(cpu)), float(np.median(wall))), parts


def time_baseline(path: Path, masks: dict[str, np.ndarray]) -> tuple[tuple[float, float], dict[str, float]]:
    """((CPU s, wall s) per image incl. reading, CPU s per part)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    data = read_image(path).data
    read = time.process_time() - start_cpu
    _, parts = mriqc_way.iqms(data, masks["head"], masks["air"], masks["wm"], masks["gm"], masks["csf"])
    totals = (time.process_time() - start_cpu, time.perf_counter() - start)
    return totals, {"read .nii.gz (nibabel)": read, **parts}


def degraded(data: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = float(np.percentile(data[data > 0.1 * data.max()], 75))
    return {"rician noise 8 %": degrade.rician_noise(data, 0.08 * ref, rng),
            "blur FWHM 5 vox": degrade.gaussian_blur(data, 5.0),
            "nyquist ghost 15 %": degrade.nyquist_ghost(data, 0.15),
            "k-space spike 3 %": degrade.kspace_spike(data, 0.03),
            "motion 80 % lines, 4 vox": degrade.motion_phase(data, 0.8, 4.0, rng),
            "bias field 1.0": degrade.bias_field(data, 1.0)}


def detection(data: np.ndarray, masks: dict[str, np.ndarray]) -> list[str]:
    calibration = load_calibration()
    skip = ((2, 0),)
    clean_ours = score(measure_image(data, skip_faces=skip), "T1w", calibration)
    clean_mriqc, _ = mriqc_way.iqms(data, masks["head"], masks["air"], masks["wm"], masks["gm"], masks["csf"])
    names = list(MRIQC_DIRECTION)
    lines = ["| degradation | iqs_noise | iqs_blur | iqs_artifact | iqs | " + " | ".join(names) + " |",
             "|---" * (5 + len(names)) + "|",
             f"| clean | {clean_ours.noise:.2f} | {clean_ours.blur:.2f} | {clean_ours.artifact:.2f} | "
             f"{clean_ours.iqs:.2f} | " + " | ".join(f"{clean_mriqc[n]:.3g}" for n in names) + " |"]
    for label, img in degraded(data).items():
        ours = score(measure_image(img, skip_faces=skip), "T1w", calibration)
        base, _ = mriqc_way.iqms(img, masks["head"], masks["air"], masks["wm"], masks["gm"], masks["csf"])
        cells = []
        for part in ("noise", "blur", "artifact", "iqs"):
            before, after = getattr(clean_ours, part), getattr(ours, part)
            cells.append(f"{after:.2f}{' ✓' if after >= before + 0.5 else ''}")
        for n in names:
            worse = MRIQC_DIRECTION[n] * (base[n] - clean_mriqc[n]) > 0.05 * abs(clean_mriqc[n])
            cells.append(f"{base[n]:.3g}{' ✓' if worse else ''}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_iqs.md"))
    parser.add_argument("--speed-only", action="store_true", help="skip the detection table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "head_256.nii.gz"
        nib.save(head_256(), path)
        data = read_image(path).data
        masks = ideal_masks(data)
        ours_total, ours_parts = time_ours(path)
        base_total, base_parts = time_baseline(path, masks)
        lines = ["## Speed: one 1 mm 256^3 int16 .nii.gz, one thread", "",
                 "| per image, incl. reading | ours: IQS (all measures + score) "
                 "| baseline: MRIQC-way IQM set, ideal masks | speed-up |",
                 "|---|---|---|---|",
                 f"| CPU time, one thread | **{ours_total[0]:.2f} s** (median of 3) | {base_total[0]:.2f} s "
                 f"| {base_total[0] / ours_total[0]:.1f}x |",
                 f"| wall time (shared machine, load {os.getloadavg()[0]:.1f}) | {ours_total[1]:.2f} s "
                 f"| {base_total[1]:.2f} s | {base_total[1] / ours_total[1]:.1f}x |",
                 "| MRIQC 24.0.2 itself (issue's figure, 2 cores, not measured here) | | ~15 s | |", "",
                 "| our part | CPU s | baseline part | CPU s |", "|---|---|---|---|"]
        ours_items, base_items = list(ours_parts.items()), list(base_parts.items())
        for i in range(max(len(ours_items), len(base_items))):
            a = ours_items[i] if i < len(ours_items) else ("", None)
            b = base_items[i] if i < len(base_items) else ("", None)
            lines.append(f"| {a[0]} | {'' if a[1] is None else f'{a[1]:.3f}'} | {b[0]} | "
                         f"{'' if b[1] is None else f'{b[1]:.3f}'} |")
        if not args.speed_only:
            lines += ["", "## Detection on the padded mean head (a template; the real-scan relations are "
                      "in bench_iqs_metamorphic.py): value on the degraded copy (✓ = moved the bad way: "
                      "IQS parts by >= 0.5, MRIQC-way metrics by > 5 %)", ""]
            lines += detection(data, masks)
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
