"""Test cases with truth, built from real heads shipped in pip packages.

The head is pydeface's mean head (with face); the removed region of each case
is known because the test itself removes or alters it:

* defacing with pydeface's own face mask (two cut planes) and with a
  quickshear-like plane through the lower face;
* face blurring: a Gaussian blur inside pydeface's face mask;
* skull-stripping with a brain mask: nilearn's MNI152 brain mask placed on the
  head by matching bounding boxes (inner skull taken 10-20 mm inside the head
  outline), then everything outside it set to 0;
* Rician noise, a smooth multiplicative bias field and a background masked
  to zero as variants (applied *before* anonymization, as in real data).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage


@dataclass(frozen=True)
class Case:
    """An image with its truth: what was removed/altered, the head and the brain."""

    name: str
    image: np.ndarray
    affine: np.ndarray
    removed: np.ndarray
    head: np.ndarray
    brain: np.ndarray
    kind: str


def _extent(mask: np.ndarray, axis: int) -> tuple[int, int]:
    other = tuple(a for a in range(3) if a != axis)
    idx = np.flatnonzero(mask.any(axis=other))
    return int(idx[0]), int(idx[-1])


def fit_brain_mask(head: np.ndarray, zooms: tuple[float, ...], brain: np.ndarray) -> np.ndarray:
    """Place ``brain`` (MNI mask, RAS voxel axes) inside the cranium of ``head`` by bounding boxes."""
    cranium = head.copy()
    cranium[:, :, :130] = False
    hx, hy = _extent(cranium, 0), _extent(cranium, 1)
    top = _extent(head, 2)[1]
    bx, by, bz = _extent(brain, 0), _extent(brain, 1), _extent(brain, 2)
    tx = (hx[0] + 10 / zooms[0], hx[1] - 10 / zooms[0])
    ty = (hy[0] + 11 / zooms[1], hy[1] - 20 / zooms[1])
    sx = (tx[1] - tx[0]) / (bx[1] - bx[0])
    sy = (ty[1] - ty[0]) / (by[1] - by[0])
    sz = (sx + sy) / 2 * zooms[0] / zooms[2]
    z_top = top - 11 / zooms[2]
    matrix = np.diag([1 / sx, 1 / sy, 1 / sz])
    offset = np.array([bx[0] - tx[0] / sx, by[0] - ty[0] / sy, bz[1] - z_top / sz])
    warped = ndimage.affine_transform(brain.astype(np.float32), matrix, offset,
                                      output_shape=head.shape, order=1)
    return warped > 0.5


@pytest.fixture(scope="session")
def head_parts(head_template: nib.Nifti1Image, face_mask: nib.Nifti1Image,
               mni_brain_mask: nib.Nifti1Image) -> dict[str, np.ndarray]:
    """The head image, its truth head mask, brain mask and face region."""
    return make_head_parts(head_template, face_mask, mni_brain_mask)


def make_head_parts(head_template: nib.Nifti1Image, face_mask: nib.Nifti1Image,
                    mni_brain_mask: nib.Nifti1Image) -> dict[str, np.ndarray]:
    """See :func:`head_parts` (plain function, shared with ``benchmarks/bench_masks.py``)."""
    data = np.asarray(head_template.dataobj, dtype=np.float32)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(data > 40, iterations=3))
    brain = fit_brain_mask(head, head_template.header.get_zooms(),
                           np.asarray(mni_brain_mask.dataobj) > 0)
    face = np.asarray(face_mask.dataobj) == 0
    return {"data": data, "head": head, "brain": brain & head, "face": face}


def rician(data: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Magnitude of ``data`` plus complex Gaussian noise."""
    rng = np.random.default_rng(seed)
    real = data + rng.normal(0.0, sigma, data.shape)
    imag = rng.normal(0.0, sigma, data.shape)
    return np.sqrt(real**2 + imag**2).astype(np.float32)


def bias_field(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth multiplicative field from 0.6 to 1.6 across the volume."""
    y = np.linspace(0.0, 1.0, shape[1])[None, :, None]
    z = np.linspace(0.0, 1.0, shape[2])[None, None, :]
    x = np.linspace(-1.0, 1.0, shape[0])[:, None, None]
    return (0.6 + 0.6 * y * z + 0.4 * (1 - x**2) * (1 - z)).astype(np.float32)


def quickshear_plane(shape: tuple[int, ...]) -> np.ndarray:
    """Voxels beyond a plane through the lower face (from chin-neck to below the nose)."""
    _, j, k = np.indices(shape)
    return k < (j - 150) * 110.0 / 106.0


CASES = ("intact", "intact_noise", "intact_bias_noise", "intact_noise_zero_background",
         "deface_template", "deface_template_noise", "deface_plane", "deface_plane_bias_noise",
         "deface_plane_noise_zero_background", "blur_noise", "blur_bias_noise",
         "strip", "strip_bias_noise")


def build_case(name: str, parts: dict[str, np.ndarray], affine: np.ndarray) -> Case:
    """Make case ``name`` (see :data:`CASES`)."""
    data, head, brain, face = parts["data"], parts["head"], parts["brain"], parts["face"]
    image = data * bias_field(data.shape) if "bias" in name else data.copy()
    if "noise" in name:
        image = rician(image, 12.0)
    if "zero_background" in name:  # background masked to 0 before release
        image = image * head
    none = np.zeros(data.shape, dtype=bool)
    if name.startswith("intact"):
        return Case(name, image, affine, none, head, brain, "none")
    if name.startswith("deface_template"):
        image[face] = 0
        return Case(name, image, affine, face & head, head, brain, "defaced")
    if name.startswith("deface_plane"):
        cut = quickshear_plane(data.shape)
        image[cut] = 0
        return Case(name, image, affine, cut & head, head, brain, "defaced")
    if name.startswith("blur"):
        blurred = ndimage.gaussian_filter(image, 3.0)
        image = np.where(face, blurred, image)
        return Case(name, image, affine, face & head, head, brain, "face_blurred")
    if name.startswith("strip"):
        image = image * brain
        return Case(name, image, affine, head & ~brain, head, brain, "skull_stripped")
    raise KeyError(name)
