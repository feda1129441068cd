"""Real anonymization methods applied to intact heads, with the truth of what each changed.

Shared by the CI tests (pip-shipped heads) and ``benchmarks/anon_corpus.py``
(the whole real corpus).  Every method works on a RAS-canonical image
(:func:`canonical`) and returns the new image plus the boolean mask of head
voxels it removed or altered.

Methods
-------
Defacing
    * ``quickshear`` — the PyPI package's own plane (convex hull of the brain
      mask, ``buff`` voxels margin), given a brain mask;
    * ``pydeface`` — pydeface's shipped face mask on its template, brought to
      the head by an affine registration of the template (SimpleITK, Mattes
      mutual information; pydeface itself does the same with FSL's FLIRT);
    * ``plane<angle>`` — a planar cut anterior-inferior of the brain at a tilt
      of ``angle`` degrees from the coronal plane;
    * ``reface_noise`` / ``reface_smooth`` / ``reface_template`` — the face
      region filled with tissue-like noise, with smoothed noise, or with the
      registered template's own face (afni_refacer's approach).
Face blurring
    * ``blur<sigma>`` — a Gaussian blur of ``sigma`` mm inside the face region.
Skull stripping (everything outside a brain mask set to the background)
    * brain masks from ``deepbet`` (learned, PyPI, MIT), dipy's ``median_otsu``,
      a template mask (nilearn's MNI152) registered to the head, or a mask
      shipped with the image; variants ``tight`` (eroded 2 mm), ``loose``
      (dilated 4 mm), ``dura`` (a 3-8 mm shell kept over the upper back of the
      brain) and ``holes`` (three 8 mm balls at the brain surface removed);
    * backgrounds ``zero`` or ``noise`` (Rician-like noise, as after resampling
      a masked image with noise added back, or a release that fills the air).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["blur_face", "canonical", "deepbet_mask", "face_region", "head_truth",
           "median_otsu_mask", "dilate_mm", "erode_mm", "plane_cut", "quickshear_deface", "reface", "register_to",
           "strip", "strip_variant", "zooms_of"]


def canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """``(data float32, affine)`` of ``img`` in the closest RAS voxel order."""
    can = nib.as_closest_canonical(img)
    data = np.asarray(can.dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    return np.nan_to_num(data), can.affine


def zooms_of(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) of an affine's columns."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def dilate_mm(mask: np.ndarray, radius_mm: float, zooms: np.ndarray) -> np.ndarray:
    """Dilation by a ball of ``radius_mm`` (exact Euclidean distance, linear time)."""
    return ndimage.distance_transform_edt(~mask, sampling=zooms) <= radius_mm


def erode_mm(mask: np.ndarray, radius_mm: float, zooms: np.ndarray) -> np.ndarray:
    """Erosion by a ball of ``radius_mm``."""
    return ndimage.distance_transform_edt(mask, sampling=zooms) > radius_mm


def _fill_2d(mask: np.ndarray) -> np.ndarray:
    out = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        out = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(out, axis, 0)], axis)
    return out


def head_truth(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Head mask of an intact image: smoothed image above a fraction of Otsu's level, closed, filled.

    Independent of :mod:`curate.masks` (a truth made by the method under test
    would flatter it).
    """
    zooms = zooms_of(affine)
    smooth = ndimage.gaussian_filter(data, 1.0 / zooms)
    level = threshold_otsu(smooth[:: 2, :: 2, :: 2])
    mask = smooth > 0.25 * level
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    pad = 8
    mask = erode_mm(dilate_mm(np.pad(mask, pad), 5.0, zooms), 5.0, zooms)[pad:-pad, pad:-pad, pad:-pad]
    return _fill_2d(mask)


def deepbet_mask(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """deepbet's brain mask (needs ``deepbet`` and torch; CPU)."""
    from deepbet import BrainExtraction

    bet = BrainExtraction(no_gpu=True)
    _, mask, _ = bet.run(nib.Nifti1Image(data, affine))
    return np.asarray(mask.dataobj) > 0


def median_otsu_mask(data: np.ndarray) -> np.ndarray:
    """dipy's ``median_otsu`` brain mask (median filter + Otsu, largest component).

    Run on a 2x block-averaged copy (its median filter is slow at full
    resolution) and brought back by nearest neighbour.
    """
    from dipy.segment.mask import median_otsu

    pads = [(0, s % 2) for s in data.shape]
    small = np.pad(data, pads, mode="edge")
    small = small.reshape(small.shape[0] // 2, 2, small.shape[1] // 2, 2, small.shape[2] // 2, 2).mean(axis=(1, 3, 5))
    _, mask = median_otsu(small, median_radius=2, numpass=2)
    mask = ndimage.binary_fill_holes(mask)
    full = mask.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return full[: data.shape[0], : data.shape[1], : data.shape[2]]


def register_to(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray,
                moving_affine: np.ndarray, labels: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Affine-register ``moving`` to ``fixed`` (SimpleITK, Mattes MI) and resample ``labels`` with it.

    Returns the labels (moving grid) on the fixed grid, nearest-neighbour for
    boolean arrays and linear otherwise.
    """
    import SimpleITK as sitk

    def to_sitk(arr: np.ndarray, aff: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.T.astype(np.float32)))
        z = zooms_of(aff)
        direction = (aff[:3, :3] / z) * np.array([-1, -1, 1])[:, None]  # RAS -> LPS
        img.SetSpacing(tuple(float(v) for v in z))
        img.SetDirection(tuple(float(v) for v in direction.ravel()))
        img.SetOrigin(tuple(float(v) for v in aff[:3, 3] * np.array([-1, -1, 1])))
        return img

    f, m = to_sitk(fixed, fixed_affine), to_sitk(moving, moving_affine)
    init = sitk.CenteredTransformInitializer(f, m, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 200, relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(f, m)
    out = []
    for lab in labels:
        interp = sitk.sitkNearestNeighbor if lab.dtype == bool else sitk.sitkLinear
        res = sitk.Resample(to_sitk(lab, moving_affine), f, transform, interp, 0.0)
        arr = sitk.GetArrayFromImage(res).T
        out.append(arr > 0.5 if lab.dtype == bool else arr)
    return out


def quickshear_deface(data: np.ndarray, affine: np.ndarray, brain: np.ndarray,
                      buff: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """quickshear (PyPI) with a brain mask; ``(image, removed)``."""
    import quickshear

    anat = nib.Nifti1Image(data, affine)
    out = quickshear.quickshear(anat, nib.Nifti1Image(brain.astype(np.uint8), affine), buff=buff)
    new = np.asarray(out.dataobj, dtype=np.float32)
    return new, (new != data)


def face_region(data: np.ndarray, affine: np.ndarray, template: nib.Nifti1Image,
                facemask: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """pydeface's face region on ``data``'s grid, and the registered template image."""
    t_data, t_aff = canonical(template)
    f_data, _ = canonical(facemask)
    face, warped = register_to(data, affine, t_data, t_aff, [f_data == 0, t_data])
    return face, warped


def plane_cut(data: np.ndarray, affine: np.ndarray, brain: np.ndarray, angle_deg: float,
              margin_mm: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Zero everything beyond a plane anterior-inferior of the brain, tilted ``angle_deg`` from coronal."""
    a = np.deg2rad(angle_deg)
    normal = np.array([0.0, np.cos(a), -np.sin(a)])
    ijk = np.indices(data.shape, dtype=np.float32).reshape(3, -1).T
    height = (ijk * zooms_of(affine)) @ normal
    height = height.reshape(data.shape)
    offset = float(height[brain].max()) + margin_mm
    cut = height > offset
    out = data.copy()
    out[cut] = 0
    return out, cut


def reface(data: np.ndarray, head: np.ndarray, face: np.ndarray, fill: str,
           template_face: np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Replace the face region with ``fill`` (``noise``, ``smooth`` or ``template``)."""
    rng = np.random.default_rng(seed)
    region = face & dilate_mm(head, 4.0, np.ones(3))
    tissue = data[head & ~face]
    mean, std = float(np.median(tissue)), float(np.std(tissue))
    if fill == "noise":
        values = rng.normal(mean, std, data.shape)
    elif fill == "smooth":
        values = ndimage.gaussian_filter(rng.normal(mean, 4 * std, data.shape), 4.0)
    elif fill == "template" and template_face is not None:
        scale = mean / max(float(np.median(template_face[head & ~face])), 1e-6)
        values = template_face * scale
    else:
        raise ValueError(fill)
    out = data.copy()
    out[region] = np.clip(values[region], 0, None)
    return out, region & head


def blur_face(data: np.ndarray, affine: np.ndarray, head: np.ndarray, face: np.ndarray,
              sigma_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur (``sigma_mm``) inside the face region."""
    blurred = ndimage.gaussian_filter(data, sigma_mm / zooms_of(affine))
    region = face & dilate_mm(head, 3.0, np.ones(3))
    return np.where(region, blurred, data).astype(np.float32), region & head


def strip_variant(brain: np.ndarray, affine: np.ndarray, variant: str, seed: int = 0) -> np.ndarray:
    """A brain mask made tight, loose, with a dura/sinus shell, or with holes."""
    zooms = zooms_of(affine)
    if variant == "plain":
        return brain
    if variant == "tight":
        return erode_mm(brain, 2.0, zooms)
    if variant == "loose":
        return dilate_mm(brain, 4.0, zooms)
    if variant == "dura":
        distance = ndimage.distance_transform_edt(~brain, sampling=zooms)
        shell = (distance > 3.0) & (distance <= 8.0)
        ijk = np.indices(brain.shape)
        centre = np.array(ndimage.center_of_mass(brain))
        upper_back = (ijk[2] > centre[2]) & (ijk[1] < centre[1])
        return brain | (shell & upper_back)
    if variant == "holes":
        rng = np.random.default_rng(seed)
        edge = np.argwhere(brain & ~ndimage.binary_erosion(brain, iterations=2))
        out = brain.copy()
        ijk = np.indices(brain.shape, dtype=np.float32)
        for p in edge[rng.choice(len(edge), 3, replace=False)]:
            dist2 = sum(((ijk[a] - p[a]) * zooms[a]) ** 2 for a in range(3))
            out &= dist2 > 8.0**2
        return out
    raise ValueError(variant)


def strip(data: np.ndarray, head: np.ndarray, brain: np.ndarray, background: str,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Everything outside ``brain`` set to 0 or to noise; ``(image, removed)``."""
    out = np.where(brain, data, 0).astype(np.float32)
    if background == "noise":
        rng = np.random.default_rng(seed)
        sigma = 0.03 * float(np.median(data[brain]))
        noise = np.hypot(rng.normal(0, sigma, data.shape), rng.normal(0, sigma, data.shape))
        out = np.where(brain, out, noise).astype(np.float32)
    elif background != "zero":
        raise ValueError(background)
    return out, head & ~brain


def pip_template() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """pydeface's shipped mean head and face mask."""
    import pydeface

    data = Path(pydeface.__file__).parent / "data"
    return nib.load(data / "mean_reg2mean.nii.gz"), nib.load(data / "facemask.nii.gz")
