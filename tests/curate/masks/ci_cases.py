"""The CI subset of the anonymization corpus: real methods on pip-shipped heads, built at fixture time.

The head is pydeface's mean head (with face) with Rician noise; each method
family of ``benchmarks/anon_corpus.py`` is represented once:

* defacing: quickshear (PyPI) with that brain mask, pydeface's shipped face mask
  (on its own template grid, so no registration is needed), a 45-degree plane
  cut, the same cut with a noise-filled background, refacing with noise;
* face blurring (3 mm);
* skull stripping: nilearn's MNI152 brain mask placed in the head (the bounding-box
  fit of ``conftest.py``) with zero and with noise background, a loose mask,
  deepbet's mask when deepbet is installed (dipy's ``median_otsu``, a b0 masker,
  returns the whole head on a T1 head, so it is no brain extractor here);
* a real release: nilearn's brain-only MNI152 2009a template.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np

from . import anon_methods as am
from .conftest import fit_brain_mask, rician


@dataclass(frozen=True)
class RealCase:
    """An anonymized image with its truth (``removed`` is ``None`` for a real release)."""

    name: str
    kind: str
    image: np.ndarray
    affine: np.ndarray
    removed: np.ndarray | None
    head: np.ndarray | None
    brain: np.ndarray


def _head() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_brain_mask

    template, facemask = am.pip_template()
    data, affine = am.canonical(template)
    data = rician(data, 12.0, seed=7)
    head = am.head_truth(data, affine)
    face = am.canonical(facemask)[0] == 0
    mni = am.canonical(load_mni152_brain_mask(resolution=1))[0] > 0
    brain = fit_brain_mask(head, tuple(am.zooms_of(affine)), mni) & head
    return data, affine, head, face, brain


@lru_cache(maxsize=1)
def ci_cases() -> dict[str, RealCase]:
    """Every CI case by name (built once per session)."""
    data, affine, head, face, brain = _head()
    out: dict[str, RealCase] = {}

    def add(name: str, kind: str, image: np.ndarray, removed: np.ndarray | None,
            case_brain: np.ndarray = brain) -> None:
        out[name] = RealCase(name, kind, image.astype(np.float32), affine, removed, head,
                             case_brain & head)

    add("intact", "none", data, np.zeros_like(head))
    img, rem = am.quickshear_deface(data, affine, brain)
    add("quickshear", "defaced", img, rem & head)
    add("pydeface", "defaced", np.where(face, 0, data), face & head)
    img, cut = am.plane_cut(data, affine, brain, 45)
    add("plane45", "defaced", img, cut & head)
    add("plane45_noisebg", "defaced", am.strip(data, head, head & ~cut, "noise", seed=1)[0], cut & head)
    img, rem = am.reface(data, head, face, "noise")
    add("reface_noise", "defaced", img, rem)
    img, rem = am.blur_face(data, affine, head, face, 3.0)
    add("blur3", "face_blurred", img, rem)
    for background in ("zero", "noise"):
        img, rem = am.strip(data, head, brain, background)
        add(f"strip_mni_{background}", "skull_stripped", img, rem)
    loose = am.strip_variant(brain, affine, "loose") & head
    img, rem = am.strip(data, head, loose, "zero")
    add("strip_loose_zero", "skull_stripped", img, rem, loose)
    if importlib.util.find_spec("deepbet") is not None:
        deep = am.deepbet_mask(data, affine) & head
        img, rem = am.strip(data, head, deep, "zero")
        add("strip_deepbet_zero", "skull_stripped", img, rem, deep)
    from nilearn.datasets import load_mni152_template

    mni, mni_affine = am.canonical(load_mni152_template(resolution=1))
    out["real_mni152"] = RealCase("real_mni152", "skull_stripped", mni, mni_affine, None, None,
                                  mni > 0)
    return out


def case_zooms(case: RealCase) -> tuple[float, float, float]:
    """Voxel sizes of a case."""
    return tuple(float(z) for z in am.zooms_of(case.affine))  # type: ignore[return-value]


def as_image(case: RealCase) -> nib.Nifti1Image:
    """A case as a NIfTI image."""
    return nib.Nifti1Image(case.image, case.affine)
