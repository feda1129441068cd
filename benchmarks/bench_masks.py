"""Benchmark the anatomy and anonymization masks against plain baselines, on one core.

Cases are the truth cases of ``tests/curate/masks`` (pydeface's mean head with
face; defaced with pydeface's face mask or a quickshear-like plane, face
blurred, skull-stripped with the MNI brain mask; noise and bias variants) plus
nilearn's brain-only MNI152 template.  For each case it times, single-threaded:

* **ours**: :func:`curate.masks.anatomy_mask` + :func:`curate.masks.detect_anonymization`;
* **otsu**: Otsu threshold on the full image + 3-D hole filling (the usual
  foreground baseline);
* **nilearn**: :func:`nilearn.masking.compute_background_mask` (foreground =
  not the border value), when nilearn is installed;

Times are the best of ``--repeats`` runs, as wall-clock seconds and as CPU
seconds of this (single-threaded) process; on a shared machine the CPU time is
the fairer figure.  It also measures anatomy Dice against the truth head, plus, for the anon mask,
recall of the removed region and the share of brain, air and head flagged.  The
naive anon baseline "every zero-valued voxel outside the foreground" is shown
beside ours.

Usage::

    python benchmarks/bench_masks.py [--repeats 3] [--cases intact_noise,strip]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.config import MasksConfig  # noqa: E402
from curate.masks import anatomy_mask, detect_anonymization  # noqa: E402
from tests.curate.masks.conftest import CASES, build_case, make_head_parts  # noqa: E402


def _load() -> tuple[nib.Nifti1Image, dict[str, np.ndarray], nib.Nifti1Image, nib.Nifti1Image]:
    import pydeface
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    data_dir = Path(pydeface.__file__).parent / "data"
    head = nib.load(data_dir / "mean_reg2mean.nii.gz")
    face = nib.load(data_dir / "facemask.nii.gz")
    brain = load_mni152_brain_mask(resolution=1)
    parts = make_head_parts(head, face, brain)
    return head, parts, load_mni152_template(resolution=1), brain


def otsu_fill(image: np.ndarray) -> np.ndarray:
    """Baseline foreground: Otsu on the image, then 3-D hole filling."""
    return ndimage.binary_fill_holes(image > threshold_otsu(image))


def nilearn_background(image: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """Baseline foreground from nilearn (``None`` when nilearn is missing)."""
    try:
        from nilearn.masking import compute_background_mask
    except ImportError:
        return None
    mask = compute_background_mask(nib.Nifti1Image(image, affine))
    return np.asarray(mask.dataobj) > 0


def _timed(func, repeats: int):
    """(best wall seconds, best CPU seconds of this process, result)."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = func()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def _share(mask: np.ndarray, region: np.ndarray) -> float:
    return float((mask & region).sum() / max(int(region.sum()), 1))


def run(case_names: list[str], repeats: int) -> list[dict[str, object]]:
    head_img, parts, mni, mni_brain = _load()
    cfg = MasksConfig()
    zooms = head_img.header.get_zooms()
    rows = []
    jobs = [(name, build_case(name, parts, head_img.affine)) for name in case_names if name != "mni"]
    for name, case in jobs + ([("mni", None)] if "mni" in case_names else []):
        if case is None:
            image = np.asarray(mni.dataobj, dtype=np.float32)
            affine, vzooms = mni.affine, mni.header.get_zooms()
            brain = np.asarray(mni_brain.dataobj) > 0
            head, removed, kind = brain, None, "skull_stripped"
        else:
            image, affine, vzooms = case.image, case.affine, zooms
            brain, head, removed, kind = case.brain, case.head, case.removed, case.kind

        def ours():
            anat = anatomy_mask(image, vzooms)
            return anat, detect_anonymization(image, affine, anat, cfg)

        t_ours, c_ours, (anat, result) = _timed(ours, repeats)
        t_otsu, c_otsu, otsu = _timed(lambda: otsu_fill(image), repeats)
        t_nil, c_nil, nil = _timed(lambda: nilearn_background(image, affine), repeats)
        anon = result.mask.astype(bool)
        # the tissue still in the image: the head minus what was removed
        present = head & ~removed if removed is not None and kind != "face_blurred" else head
        naive = (image == image.min()) & ~otsu
        air = ~head
        row = {
            "case": name, "voxels": image.size, "truth": kind, "found": result.kind,
            "conf": result.confidence, "wall_ours": t_ours, "cpu_ours": c_ours,
            "wall_otsu": t_otsu, "cpu_otsu": c_otsu,
            "cpu_nilearn": c_nil if nil is not None else float("nan"),
            "dice_ours": _dice(anat.astype(bool), present), "dice_otsu": _dice(otsu, present),
            "dice_nilearn": _dice(nil, present) if nil is not None else float("nan"),
        }
        for tag, mask in (("ours", anon), ("naive", naive)):
            row[f"recall_{tag}"] = _share(mask, removed) if removed is not None and removed.any() \
                else float("nan")
            row[f"brain_{tag}"] = _share(mask, brain)
            row[f"air_{tag}"] = _share(mask, air) if case is not None else float("nan")
            row[f"head_{tag}"] = _share(mask, head) if kind == "none" else float("nan")
        rows.append(row)
        print(f"  {name}: {result.kind} in {t_ours:.2f} s", file=sys.stderr, flush=True)
    return rows


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.3f}" if value < 10 else f"{value:.0f}"
    return str(value)


def markdown(rows: list[dict[str, object]]) -> str:
    """Two markdown tables: speed and anatomy Dice; anon-mask accuracy."""
    speed = ["case", "voxels", "cpu_ours", "wall_ours", "cpu_otsu", "wall_otsu", "cpu_nilearn",
             "dice_ours", "dice_otsu", "dice_nilearn"]
    accuracy = ["case", "truth", "found", "conf", "recall_ours", "brain_ours", "air_ours",
                "head_ours", "recall_naive", "air_naive", "head_naive"]
    out = []
    for cols in (speed, accuracy):
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        out.extend("| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows)
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--cases", default=",".join((*CASES, "mni")),
                        help="comma-separated case names")
    args = parser.parse_args(argv)
    rows = run(args.cases.split(","), args.repeats)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
