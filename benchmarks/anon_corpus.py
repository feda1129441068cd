"""Build the real anonymization corpus: real heads anonymized by real methods, with truth.

Sources (read from caches, never committed; see docs/masks.md "Corpus"):

* intact heads with face: Colin27 (``ch2``, MRIcron's templates), ``chris_t1``
  and ``chris_PD`` (niivue-images; one real subject, T1 with neck and a thick-slice
  PD), pydeface's mean head (PyPI);
* real skull-stripped releases: ``ch2bet`` (FSL BET output shipped with
  MRIcron), ``MR_Gd`` (contrast T1w brain extraction, niivue-images),
  ``spm152`` (SPM's brain-only template, niivue-images), nilearn's MNI152 2009a
  (brain-only contrast, PyPI).

Every intact head is defaced, face-blurred and skull-stripped by the methods of
``tests/curate/masks/anon_methods.py``.  Each case is written to
``CACHE/<case>.nii.gz`` with ``CACHE/<case>_removed.nii.gz`` (truth voxels
removed/altered), ``_head`` and ``_brain`` masks, and ``CACHE/index.json``
(class, source, method).  Every third case is stored in LPS and every third
in PIL voxel order so orientation handling is exercised.

Usage: ``python benchmarks/anon_corpus.py [--cache /work/cache/anon/corpus]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.curate.masks import anon_methods as am  # noqa: E402

SRC = Path("/work/cache/anon/src")
INTACT = {"ch2": SRC / "ch2.nii.gz", "chris_t1": SRC / "chris_t1.nii.gz",
          "chris_pd": SRC / "chris_PD.nii.gz", "pydeface_mean": None}
REAL_STRIPPED = {"ch2bet": SRC / "ch2bet.nii.gz", "MR_Gd": SRC / "MR_Gd.nii.gz",
                 "spm152": SRC / "spm152.nii.gz", "mni152_2009a": None}
ORIENTS = ("RAS", "LPS", "PIL")


def _nilearn_mni() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    return load_mni152_template(resolution=1), load_mni152_brain_mask(resolution=1)


def _load_intact(name: str) -> nib.Nifti1Image:
    path = INTACT[name]
    return am.pip_template()[0] if path is None else nib.load(path)


def _mni_brain_on(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """nilearn's MNI152 brain mask brought to the head through Colin27 (an MNI-space head)."""
    ch2 = nib.load(INTACT["ch2"])
    _, mask = _nilearn_mni()
    on_ch2 = np.asarray(resample_from_to(mask, ch2, order=0).dataobj) > 0
    c_data, c_aff = am.canonical(ch2)
    on_ch2 = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(on_ch2.astype(np.uint8), ch2.affine)).dataobj) > 0
    return am.register_to(data, affine, c_data, c_aff, [on_ch2])[0]


def head_cases(name: str) -> list[dict]:
    """Every case made from intact head ``name``: dicts with image, truth and labels."""
    data, affine = am.canonical(_load_intact(name))
    head = am.head_truth(data, affine)
    t0 = time.time()
    brains = {"deepbet": am.deepbet_mask(data, affine), "median_otsu": am.median_otsu_mask(data),
              "mni": _mni_brain_on(data, affine)}
    if name == "ch2":
        shipped = nib.load(REAL_STRIPPED["ch2bet"])
        brains["shipped_bet"] = am.canonical(shipped)[0] > 0
    template, facemask = am.pip_template()
    face, warped = am.face_region(data, affine, template, facemask)
    print(f"{name}: masks and registrations {time.time() - t0:.0f} s", flush=True)
    brain = brains["deepbet"]
    cases = [dict(case="intact", kind="none", image=data, removed=np.zeros_like(head))]
    swap = data * head if (data[~head] > 0).mean() > 0.5 else am.strip(data, head, head, "noise")[0]
    cases.append(dict(case="intact_bgswap", kind="none", image=swap, removed=np.zeros_like(head)))
    img, rem = am.quickshear_deface(data, affine, brain)
    cases.append(dict(case="deface_quickshear", kind="defaced", image=img, removed=rem & head))
    img = np.where(face, 0, data).astype(np.float32)
    cases.append(dict(case="deface_pydeface", kind="defaced", image=img, removed=face & head))
    for angle in (20, 45, 70):
        img, cut = am.plane_cut(data, affine, brain, angle)
        cases.append(dict(case=f"deface_plane{angle}", kind="defaced", image=img, removed=cut & head))
    for label, removed in (("pydeface", face & head), ("plane45", cases[-2]["removed"])):
        img = am.strip(data, head, head & ~removed, "noise", seed=1)[0]
        cases.append(dict(case=f"deface_{label}_noisebg", kind="defaced", image=img, removed=removed))
    for fill in ("noise", "smooth", "template"):
        img, rem = am.reface(data, head, face, fill, template_face=warped)
        cases.append(dict(case=f"reface_{fill}", kind="defaced", image=img, removed=rem))
    for sigma in (3.0, 6.0):
        img, rem = am.blur_face(data, affine, head, face, sigma)
        cases.append(dict(case=f"blur{sigma:.0f}", kind="face_blurred", image=img, removed=rem))
    masks = {k: v & head for k, v in brains.items()}
    for variant in ("tight", "loose", "dura", "holes"):
        masks[f"deepbet_{variant}"] = am.strip_variant(brain, affine, variant) & head
    for label, mask in masks.items():
        for background in ("zero", "noise"):
            img, rem = am.strip(data, head, mask, background)
            cases.append(dict(case=f"strip_{label}_{background}", kind="skull_stripped",
                              image=img, removed=rem))
    for c in cases:
        c.update(source=name, affine=affine, head=head, brain=brain & head)
    return cases


def real_cases() -> list[dict]:
    """Real skull-stripped releases (class truth only)."""
    out = []
    for name, path in REAL_STRIPPED.items():
        img = _nilearn_mni()[0] if path is None else nib.load(path)
        data, affine = am.canonical(img)
        out.append(dict(case="real", kind="skull_stripped", image=data, affine=affine, source=name,
                        removed=None, head=None, brain=data > 0))
    return out


def _save(case: dict, stem: str, cache: Path, orient: str) -> None:
    ornt = nib.orientations.axcodes2ornt(orient)
    base = nib.Nifti1Image(case["image"].astype(np.float32), case["affine"])
    xfm = nib.orientations.ornt_transform(nib.io_orientation(case["affine"]), ornt)
    img = base.as_reoriented(xfm)
    img.to_filename(cache / f"{stem}.nii.gz")
    for key in ("removed", "head", "brain"):
        if case.get(key) is not None:
            m = nib.Nifti1Image(case[key].astype(np.uint8), case["affine"]).as_reoriented(xfm)
            m.set_data_dtype(np.uint8)
            m.to_filename(cache / f"{stem}_{key}.nii.gz")


def build_head(cache: Path, name: str) -> list[dict]:
    """Write every case of one intact head to ``cache``; its index goes to ``index_<name>.json``."""
    cache.mkdir(parents=True, exist_ok=True)
    index = []
    for case in head_cases(name):
        stem = f"{name}__{case['case']}"
        orient = ORIENTS[len(index) % 3]
        _save(case, stem, cache, orient)
        index.append(dict(stem=stem, source=name, method=case["case"], kind=case["kind"],
                          orient=orient, truth_voxels=True))
    (cache / f"index_{name}.json").write_text(json.dumps(index, indent=1))
    return index


def build_real(cache: Path) -> list[dict]:
    """Write the real releases; their index goes to ``index_real.json``."""
    cache.mkdir(parents=True, exist_ok=True)
    index = []
    for case in real_cases():
        stem = f"{case['source']}__real"
        _save(case, stem, cache, "RAS")
        index.append(dict(stem=stem, source=case["source"], method="real release",
                          kind=case["kind"], orient="RAS", truth_voxels=False))
    (cache / "index_real.json").write_text(json.dumps(index, indent=1))
    return index


def kind_of(method: str) -> str:
    """The truth class of a method name."""
    if method.startswith("intact"):
        return "none"
    if method.startswith(("deface", "reface")):
        return "defaced"
    if method.startswith("blur"):
        return "face_blurred"
    return "skull_stripped"


def merge(cache: Path) -> list[dict]:
    """Join the per-source indexes into ``index.json``, plus cases of heads still being written."""
    index = []
    for part in sorted(cache.glob("index_*.json")):
        index += json.loads(part.read_text())
    known = {e["stem"] for e in index}
    for path in sorted(cache.glob("*__*_brain.nii.gz")):  # the last file written for a case
        stem = path.name[: -len("_brain.nii.gz")]
        if stem not in known:
            source, method = stem.split("__", 1)
            orient = "".join(nib.aff2axcodes(nib.load(cache / f"{stem}.nii.gz").affine))
            index.append(dict(stem=stem, source=source, method=method, kind=kind_of(method),
                              orient=orient, truth_voxels=True))
    tmp = cache / f".index.{os.getpid()}.json"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, cache / "index.json")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/cache/anon/corpus"))
    parser.add_argument("--heads", nargs="*", default=list(INTACT))
    parser.add_argument("--real", action="store_true", help="also write the real releases")
    parser.add_argument("--merge-only", action="store_true", help="only rewrite index.json")
    args = parser.parse_args(argv)
    for name in [] if args.merge_only else args.heads:
        build_head(args.cache, name)
    if args.real and not args.merge_only:
        build_real(args.cache)
    index = merge(args.cache)
    print(f"{len(index)} cases in {args.cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
